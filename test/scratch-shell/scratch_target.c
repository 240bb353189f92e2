/* The only file of the test's scratch "container" (and its pause process):
 * a static binary that changes to the directory given as argv[1], then sleeps
 * until SIGTERM/SIGINT. As PID 1 it needs explicit handlers to be stoppable. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void on_signal(int sig)
{
    _exit(128 + sig);
}

int main(int argc, char **argv)
{
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (argc > 1 && chdir(argv[1]) < 0) {
        perror("chdir");
        return 1;
    }
    for (;;)
        pause();
}
