/* rpc_log — see rpc_log.h. */
#include "rpc_log.h"

#include <grpc/support/log.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "basic/time-util.h"

/* The noise counter is process-wide, as gRPC core's log hook is. */
static struct {
    pthread_mutex_t mu;
    int64_t period_start_ms;
    int shown;                /* lines shown in this period */
    unsigned long suppressed; /* lines counted instead */
} noise = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};

void rpc_log_escape(char *out, size_t outsz, const void *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    if (!p)
        len = 0;
    for (; i < len; i++) {
        char e[4];
        size_t n = 0;
        unsigned char ch = p[i];
        const char *c = ch == '\n'   ? "n"
                        : ch == '\r' ? "r"
                        : ch == '\t' ? "t"
                        : ch == '\\' ? "\\"
                        : ch == '"'  ? "\""
                                     : NULL;
        if (c) {
            e[n++] = '\\';
            e[n++] = *c;
        } else if (ch >= 0x20 && ch < 0x7f) {
            e[n++] = (char)ch;
        } else {
            e[n++] = '\\';
            e[n++] = 'x';
            e[n++] = hex[ch >> 4];
            e[n++] = hex[ch & 15];
        }
        if (o + n + 4 > outsz) /* room left for "..." and the NUL */
            break;
        memcpy(out + o, e, n);
        o += n;
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    if (!p)
        out[o++] = '?';
    out[o] = 0;
}

static void log_line(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void log_line(const char *fmt, va_list ap)
{
    char line[2048];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n < 0)
        return;
    fprintf(stderr, "kdiag rpc: %s\n", line); /* one write: lines from threads do not mix */
}

void rpc_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(fmt, ap);
    va_end(ap);
}

/* Ends the period when it is over; called with noise.mu held. */
static void noise_roll(int64_t now)
{
    if (now - noise.period_start_ms < RPC_NOISE_PERIOD_MS)
        return;
    if (noise.suppressed)
        rpc_log("%lu more lines about peers without the token in the last %d s, not shown", noise.suppressed,
                RPC_NOISE_PERIOD_MS / 1000);
    noise.period_start_ms = now;
    noise.shown = 0;
    noise.suppressed = 0;
}

void rpc_log_noise(const char *fmt, ...)
{
    pthread_mutex_lock(&noise.mu);
    noise_roll(time_now_ms());
    bool show = noise.shown < RPC_NOISE_LINES;
    if (show) {
        noise.shown++;
        va_list ap;
        va_start(ap, fmt);
        log_line(fmt, ap);
        va_end(ap);
    } else {
        noise.suppressed++;
    }
    pthread_mutex_unlock(&noise.mu);
}

int64_t rpc_log_noise_tick(void)
{
    pthread_mutex_lock(&noise.mu);
    int64_t now = time_now_ms();
    noise_roll(now);
    int64_t left = noise.suppressed ? noise.period_start_ms + RPC_NOISE_PERIOD_MS - now : -1;
    pthread_mutex_unlock(&noise.mu);
    return left;
}

static void grpc_log_hook(gpr_log_func_args *a)
{
    char msg[512], file[RPC_LOG_FIELD];
    const char *base = a->file ? strrchr(a->file, '/') : NULL;
    base = base ? base + 1 : a->file;
    rpc_log_escape(msg, sizeof msg, a->message, a->message ? strlen(a->message) : 0);
    rpc_log_escape(file, sizeof file, base, base ? strlen(base) : 0);
    rpc_log_noise("grpc %s %s:%d: %s", gpr_log_severity_string(a->severity), file, a->line, msg);
}

void rpc_log_capture_grpc(void)
{
    gpr_set_log_function(grpc_log_hook);
}
