/* An open-loop HTTP/1.1 load generator for bench/tail.py: GETs due at a constant rate over
   keep-alive connections, each request's latency counted from when it was due.

   Why in C: the asyncio client tail.py had used spends ~100 us of CPU per request; at 5,000
   req/s that is half a core of the 2 the server runs on, and the client's own stalls were
   charged to the server (it was up to 2.2 ms late at p99). This one is one thread on epoll.

   Request i is due at start + i / rate. A due request goes out on an idle connection at once;
   with none idle it waits for the first one to free (open loop: its wait counts in its latency,
   so a server stall is charged to every request it held up; no coordinated omission).
   Responses carry Content-Length (wasmlet's hello) or are chunked (`wasmtime serve`'s, RFC 9112
   section 7.1; no trailers).

   usage: openloop PORT PATH RATE SECONDS CONNECTIONS TIMEOUT_MS OUT
   OUT gets one line per completed request: "latency_us lag_us conn due_us" (lag: how late it was
   sent; conn: the connection's index; due_us: when it was due, from the start).
   stderr gets "conn I LOCAL_PORT" for each connection, then "start NS" (CLOCK_MONOTONIC, the clock
   of Python's time.monotonic_ns): enough to tell which server process served each request and when
   (bench/spells.py). stdout gets "sent N completed N errors N elapsed_s S". Exit status 2 on bad
   arguments. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    int busy;
    int64_t due, sent;
    size_t have;
    char buf[BUF];
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int open_conn(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The end of a chunked body starting at c->buf + at (RFC 9112 section 7.1: hex size, CRLF, data,
   CRLF, ..., a zero size, CRLF, no trailers, CRLF): its offset, 0 if not all there yet, -1 if malformed. */
static long chunked_end(struct conn *c, size_t at) {
    for (;;) {
        char *line_end = memmem(c->buf + at, c->have - at, "\r\n", 2);
        if (!line_end) return c->have >= BUF - 1 ? -1 : 0;
        char *digits_end;
        long size = strtol(c->buf + at, &digits_end, 16);
        if (digits_end == c->buf + at || size < 0 || size > BUF) return -1;
        at = (size_t)(line_end - c->buf) + 2 + (size_t)size + 2;
        if (at > BUF - 1) return -1;
        if (c->have < at) return 0;
        if (memcmp(c->buf + at - 2, "\r\n", 2) != 0) return -1;
        if (size == 0) return (long)at;
    }
}

/* The length of one whole response at the start of c->buf, 0 if not all there yet, -1 if malformed. */
static long whole_response(struct conn *c) {
    char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (!end) return c->have >= BUF - 1 ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    long length = -1;
    int chunked = 0;
    for (char *line = strstr(c->buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "content-length:", 15) == 0) length = strtol(line + 17, NULL, 10);
        if (strncasecmp(line + 2, "transfer-encoding: chunked\r\n", 28) == 0) chunked = 1;
    }
    if (chunked) return chunked_end(c, head);
    if (length < 0 || head + (size_t)length > BUF - 1) return -1;
    return c->have >= head + (size_t)length ? (long)(head + (size_t)length) : 0;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: openloop PORT PATH RATE SECONDS CONNECTIONS TIMEOUT_MS OUT\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *path = argv[2];
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int n = atoi(argv[5]);
    int64_t timeout = (int64_t)atol(argv[6]) * 1000000;
    FILE *out = fopen(argv[7], "w");
    if (port <= 0 || rate <= 0 || seconds <= 0 || n <= 0 || n > 4096 || timeout <= 0 || !out) {
        fprintf(stderr, "openloop: bad arguments\n");
        return 2;
    }
    char request[512];
    int request_len = snprintf(request, sizeof request,
                               "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: open-loop\r\n\r\n", path, port);
    struct conn *conns = calloc((size_t)n, sizeof *conns);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        conns[i].fd = open_conn(port);
        if (conns[i].fd < 0) {
            perror("openloop: connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
        struct sockaddr_in me;
        socklen_t size = sizeof me;
        if (getsockname(conns[i].fd, (struct sockaddr *)&me, &size) == 0)
            fprintf(stderr, "conn %d %d\n", i, ntohs(me.sin_port));
    }
    long total = (long)(rate * seconds), next = 0, sent = 0, done = 0, errors = 0;
    int64_t *queue = malloc(sizeof(int64_t) * (size_t)(total + 1)); /* due times waiting for a connection */
    long qhead = 0, qtail = 0;
    int rr = 0;
    int64_t interval = (int64_t)(1e9 / rate), start = now_ns() + 100000000;
    struct epoll_event events[256];
    fprintf(stderr, "start %lld\n", (long long)start);
    fflush(stderr);
    while (done + errors < total) {
        int64_t t = now_ns();
        while (next < total && start + next * interval <= t) queue[qtail++] = start + (next++) * interval;
        /* Round-robin over the idle connections (from the one after the last used): the lowest-numbered
           first would pile the load on the few connections, and so the one server worker, they landed on. */
        for (int scanned = 0; scanned < n && qhead < qtail; scanned++) {
            struct conn *c = &conns[rr];
            rr = (rr + 1) % n;
            if (c->busy || c->fd < 0) continue;
            c->due = queue[qhead++];
            c->sent = now_ns();
            c->have = 0;
            if (write(c->fd, request, (size_t)request_len) != request_len) { /* loopback: all or error */
                errors++;
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->busy = 1;
            sent++;
        }
        for (int i = 0; i < n; i++) { /* a request past its timeout is an error; its connection is closed */
            struct conn *c = &conns[i];
            if (c->busy && t - c->sent > timeout) {
                errors++;
                c->busy = 0;
                close(c->fd);
                c->fd = -1;
            }
        }
        int alive = 0;
        for (int i = 0; i < n; i++) alive += conns[i].fd >= 0;
        if (!alive && done + errors < total) {
            errors += total - done - errors; /* nothing left to send on */
            break;
        }
        int64_t wait = next < total ? start + next * interval - now_ns() : 10000000;
        if (qhead < qtail) wait = 1000000; /* waiting for a connection to free */
        if (wait < 0) wait = 0;
        struct timespec ts = {.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
        int k = epoll_pwait2(ep, events, 256, &ts, NULL);
        for (int e = 0; e < k; e++) {
            struct conn *c = &conns[events[e].data.u32];
            if (c->fd < 0) continue;
            ssize_t r = read(c->fd, c->buf + c->have, BUF - 1 - c->have); /* room for the NUL strstr needs */
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                errors += c->busy;
                c->busy = 0;
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->have += (size_t)r;
            c->buf[c->have] = '\0';
            long whole = whole_response(c);
            if (whole == 0) continue;
            int64_t end = now_ns();
            if (whole < 0 || !c->busy || strncmp(c->buf, "HTTP/1.1 200", 12) != 0) {
                errors++;
            } else {
                done++;
                fprintf(out, "%lld %lld %d %lld\n", (long long)((end - c->due) / 1000),
                        (long long)((c->sent - c->due) / 1000), (int)(c - conns), (long long)((c->due - start) / 1000));
            }
            c->busy = 0;
            c->have = 0;
        }
    }
    printf("sent %ld completed %ld errors %ld elapsed_s %.3f\n", sent, done, errors, (now_ns() - start) / 1e9);
    fclose(out);
    return 0;
}
