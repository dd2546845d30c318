// A WAGI guest whose stdout is whatever the test asks for: the request's query
// string, percent-decoded, byte for byte ('+' stays '+'). A tenant controls its
// guest's stdout completely; this guest lets a test write the hostile CGI
// responses an attacker would (Status: 204 with a body, 1xx, control characters,
// headers the host owns). With no query it answers plainly with the address the
// host gave as REMOTE_ADDR, for the client-address tests.
#include <stdio.h>
#include <stdlib.h>

static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(void) {
    const char *query = getenv("QUERY_STRING");
    if (!query || !*query) {
        const char *remote = getenv("REMOTE_ADDR");
        printf("Content-Type: text/plain\n\nremote=%s\n", remote ? remote : "");
        return 0;
    }
    for (const char *p = query; *p; p++) {
        if (*p == '%' && hex(p[1]) >= 0 && hex(p[2]) >= 0) {
            putchar(hex(p[1]) * 16 + hex(p[2]));
            p += 2;
        } else {
            putchar(*p);
        }
    }
    return 0;
}
