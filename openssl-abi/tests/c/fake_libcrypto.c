/* A stand-in for libcrypto >= 3.1 in one respect: it defines ASYNC_is_capable
 * as OPENSSL_3.0.0 and ASYNC_set_mem_functions as OPENSSL_3.1.0 (version
 * script fake_libcrypto.map), each returning 42. preload_versions.c is linked
 * against it, so its references carry those versions; c_programs.rs runs it
 * with and without LD_PRELOAD=libstackjob_openssl.so. */
#include <stddef.h>

int ASYNC_is_capable(void) { return 42; }
int ASYNC_set_mem_functions(void *alloc_fn, void *free_fn)
{
    (void)alloc_fn;
    (void)free_fn;
    return 42;
}
