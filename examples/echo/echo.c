/*
 * WAGI echo: reflects the request it was given.
 * Method, path and query come from CGI meta-variables (RFC 3875), headers
 * from HTTP_* variables, the body from stdin; variables the manifest set
 * (anything that is not a CGI or HTTP_ variable) are listed as "env".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static const char *get(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

static int is_cgi(const char *entry) {
    static const char *prefixes[] = {
        "HTTP_", "AUTH_TYPE=", "CONTENT_", "GATEWAY_INTERFACE=", "PATH_", "QUERY_STRING=",
        "REMOTE_", "REQUEST_METHOD=", "SCRIPT_NAME=", "SERVER_", "X_", NULL,
    };
    for (const char **p = prefixes; *p; p++)
        if (strncmp(entry, *p, strlen(*p)) == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    printf("Content-Type: text/plain; charset=utf-8\n");
    printf("X-Echo-Method: %s\n\n", get("REQUEST_METHOD"));
    printf("method: %s\n", get("REQUEST_METHOD"));
    printf("path: %s%s\n", get("SCRIPT_NAME"), get("PATH_INFO"));
    printf("script_name: %s\n", get("SCRIPT_NAME"));
    printf("path_info: %s\n", get("PATH_INFO"));
    printf("query: %s\n", get("QUERY_STRING"));
    for (int i = 1; i < argc; i++) printf("arg: %s\n", argv[i]);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "HTTP_", 5) == 0) printf("header: %s\n", *e + 5);
    for (char **e = environ; *e; e++)
        if (!is_cgi(*e)) printf("env: %s\n", *e);
    printf("content_length: %s\n", get("CONTENT_LENGTH"));
    printf("body: ");
    /* static: on the stack it would take all of the 64 KiB wasm-ld gives a module by default,
       and the stack, which has no guard page, would grow into the data below it. */
    static char buffer[65536];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, stdin)) > 0) fwrite(buffer, 1, n, stdout);
    printf("\n");
    return 0;
}
