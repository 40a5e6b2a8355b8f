/* Stand-in for the two libcrypto functions the man-page example calls
 * (OPENSSL_malloc, OPENSSL_free), for the musl legs: there is no OpenSSL
 * on a musl system here, which is the point of those legs. */
#ifndef STACKJOB_TEST_SHIM_CRYPTO_H
#define STACKJOB_TEST_SHIM_CRYPTO_H
#include <stdlib.h>
#define OPENSSL_malloc(n) malloc(n)
#define OPENSSL_free(p) free(p)
#endif
