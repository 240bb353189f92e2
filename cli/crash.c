/* crash — see crash.h. The handler calls only what is safe in a signal
 * handler: write(2) (fd_write_all), backtrace_symbols_fd(3) (no malloc), backtrace(3)
 * once its library is loaded (done at init), raise(3). */
#include "crash.h"

#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "basic/fd-util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CRASH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define CRASH_SANITIZED 1
#endif
#endif

#ifndef CRASH_SANITIZED
static const struct {
    int sig;
    const char *name;
} fatal[] = {{SIGSEGV, "SIGSEGV"}, {SIGBUS, "SIGBUS"}, {SIGFPE, "SIGFPE"}, {SIGILL, "SIGILL"}, {SIGABRT, "SIGABRT"}};

static void say(const char *s)
{
    (void)fd_write_all(STDERR_FILENO, s, strlen(s));
}

/* v in base 10 or 16 ("0x..."), into buf (at least 24 bytes). */
static const char *num(uintptr_t v, unsigned base, char *buf)
{
    char *p = buf + 23;
    *p = '\0';
    do {
        *--p = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (base == 16) {
        *--p = 'x';
        *--p = '0';
    }
    return p;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    const char *name = "a fatal signal";
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
        if (fatal[i].sig == sig)
            name = fatal[i].name;
    char buf[24];
    if (si->si_code <= 0 && si->si_pid != getpid()) { /* kill(2) from elsewhere, not the CPU or abort(3) */
        say("kubectl-diag: ");
        say(name);
        say(" sent by process ");
        say(num((uintptr_t)si->si_pid, 10, buf));
        say("; the stack of the thread that took it:\n");
    } else {
        say("kubectl-diag: crashed: ");
        say(name);
        if (sig == SIGSEGV || sig == SIGBUS) {
            say(" at address ");
            say(num((uintptr_t)si->si_addr, 16, buf));
        }
        say(". This is a bug in kubectl-diag: please report it with the command you ran and the "
            "lines below.\n");
    }
    void *frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    raise(sig); /* SA_RESETHAND: the default action now, once the handler returns */
}

#endif

void crash_report_init(void)
{
#ifndef CRASH_SANITIZED
    void *frame;
    backtrace(&frame, 1); /* loads libgcc's unwinder now, not in the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
        sigaction(fatal[i].sig, &sa, NULL);
#endif
}
