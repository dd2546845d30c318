/* Logs to stderr and answers with a custom status and header. */
#include <stdio.h>

int main(void) {
    fputs("stderr guest: first line\nstderr guest: second line\n", stderr);
    fputs("Status: 201 Created\nContent-Type: text/plain\nX-Guest: yes\n\ncreated\n", stdout);
    return 0;
}
