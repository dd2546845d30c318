/* Output that is not a CGI response: no header, no blank line (502). */
#include <stdio.h>

int main(void) {
    fputs("this is not a header\nneither is this\n", stdout);
    return 0;
}
