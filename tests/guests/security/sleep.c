/* Sleeps in poll_oneoff as the query string says, then answers: for the deadline tests.
 *   rel=MS    nanosleep: one relative clock subscription (wasi-libc's sleep and usleep)
 *   mono=MS   clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, now + MS)
 *   real=MS   clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, now + MS)
 *   stdin=MS  poll() on stdin with a timeout of MS (an fd and a clock subscription; stdin is ready)
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void after(struct timespec *ts, clockid_t clock, long ms) {
    clock_gettime(clock, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
}

int main(void) {
    const char *query = getenv("QUERY_STRING");
    query = query ? query : "";
    const char *eq = strchr(query, '=');
    long ms = eq ? atol(eq + 1) : 0;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    int rc = 0;
    if (strncmp(query, "rel=", 4) == 0) {
        rc = nanosleep(&ts, NULL);
    } else if (strncmp(query, "mono=", 5) == 0) {
        after(&ts, CLOCK_MONOTONIC, ms);
        rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    } else if (strncmp(query, "real=", 5) == 0) {
        after(&ts, CLOCK_REALTIME, ms);
        rc = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL);
    } else if (strncmp(query, "stdin=", 6) == 0) {
        struct pollfd fd = {0, POLLIN, 0};
        rc = poll(&fd, 1, (int)ms);
    }
    printf("Content-Type: text/plain\n\n%s rc=%d\n", query, rc);
    return 0;
}
