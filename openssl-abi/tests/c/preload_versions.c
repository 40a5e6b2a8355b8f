/* Prints which library answers two versioned references: 42 42 from
 * fake_libcrypto.so, 1 1 from libstackjob_openssl.so when it is preloaded
 * and defines the same symbol versions. */
#include <stdio.h>

int ASYNC_is_capable(void);
int ASYNC_set_mem_functions(void *alloc_fn, void *free_fn);

int main(void)
{
    printf("%d %d\n", ASYNC_is_capable(), ASYNC_set_mem_functions(NULL, NULL));
    return 0;
}
