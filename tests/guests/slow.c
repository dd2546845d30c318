/* Answers after ?ms=N milliseconds of sleep (poll_oneoff), for drain tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(void) {
    const char *query = getenv("QUERY_STRING");
    long ms = 0;
    if (query && strncmp(query, "ms=", 3) == 0) ms = atol(query + 3);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    printf("Content-Type: text/plain\n\nslept %ld ms\n", ms);
    return 0;
}
