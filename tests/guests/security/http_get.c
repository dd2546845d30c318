// A WAGI guest that makes one outbound request with deislabs' wasi_experimental_http.
// The URL is the request's query string; the method and body are the request's own.
// It prints what each host call returned, so the tests can check the ABI end to end.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HTTP_IMPORT(name) __attribute__((import_module("wasi_experimental_http"), import_name(name)))

HTTP_IMPORT("req")
uint32_t http_req(const char *url, size_t url_len, const char *method, size_t method_len,
                  const char *headers, size_t headers_len, const uint8_t *body, size_t body_len,
                  uint16_t *status, uint32_t *handle);
HTTP_IMPORT("close") uint32_t http_close(uint32_t handle);
HTTP_IMPORT("header_get")
uint32_t http_header_get(uint32_t handle, const char *name, size_t name_len, char *value, size_t value_len,
                         size_t *written);
HTTP_IMPORT("headers_get_all")
uint32_t http_headers_get_all(uint32_t handle, char *buf, size_t buf_len, size_t *written);
HTTP_IMPORT("body_read")
uint32_t http_body_read(uint32_t handle, uint8_t *buf, size_t buf_len, size_t *written);

static uint8_t request_body[65536];
static uint8_t response_body[1 << 20];
static char all_headers[8192];

int main(void) {
    const char *url = getenv("QUERY_STRING");
    const char *method = getenv("REQUEST_METHOD");
    if (!url || !method) return 2;
    size_t body_len = 0;
    ssize_t n;
    while (body_len < sizeof request_body &&
           (n = read(0, request_body + body_len, sizeof request_body - body_len)) > 0)
        body_len += (size_t)n;

    const char *headers = "X-Test: from-guest\nHost: ignored.example\nContent-Length: 999\n";
    uint16_t status = 0;
    uint32_t handle = 0;
    uint32_t err = http_req(url, strlen(url), method, strlen(method), headers, strlen(headers),
                            request_body, body_len, &status, &handle);
    printf("Content-Type: text/plain\n\n");
    printf("req=%u\n", err);
    if (err != 0) return 0;
    printf("status=%u\n", status);

    char value[256];
    size_t written = 0;
    err = http_header_get(handle, "X-Echo", 6, value, sizeof value - 1, &written);
    value[err == 0 ? written : 0] = 0;
    printf("header_get=%u x-echo=%s\n", err, value);
    err = http_header_get(handle, "x-missing", 9, value, sizeof value, &written);
    printf("header_get_missing=%u\n", err);
    err = http_header_get(handle, "x-echo", 6, value, 1, &written);
    printf("header_get_small=%u\n", err);

    err = http_headers_get_all(handle, all_headers, sizeof all_headers - 1, &written);
    all_headers[err == 0 ? written : 0] = 0;
    printf("headers_get_all=%u has_x_echo=%d\n", err, strstr(all_headers, "x-echo:yes\n") != NULL);

    size_t total = 0;
    do {  // small reads, to exercise the cursor
        err = http_body_read(handle, response_body + total, 7, &written);
        total += written;
    } while (err == 0 && written > 0 && total + 7 <= sizeof response_body);
    printf("body_read=%u bytes=%zu\n", err, total);
    printf("body=%.*s\n", (int)total, (const char *)response_body);

    printf("close=%u\n", http_close(handle));
    err = http_body_read(handle, response_body, 7, &written);
    printf("after_close=%u\n", err);
    return 0;
}
