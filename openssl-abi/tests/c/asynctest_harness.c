/* Runs OpenSSL's own test/asynctest.c (not part of this repository: give
 * its path as -DASYNCTEST_C='"path"'; scripts/test-openssl-abi.sh does with
 * OPENSSL_ASYNCTEST_C) against this library, with its
 * test_ASYNC_set_mem_functions (OpenSSL >= 3.1) run first, before any job
 * stack exists: later, ASYNC_set_mem_functions returns 0, in OpenSSL as
 * here, and that test passes without checking anything. Then its main runs
 * every test, on stacks from the custom allocator. */
#define main openssl_asynctest_main
#include ASYNCTEST_C
#undef main

int main(int argc, char **argv)
{
    if (!test_ASYNC_set_mem_functions()) {
        fprintf(stderr, "asynctest_harness: test_ASYNC_set_mem_functions failed\n");
        return 1;
    }
    if (!custom_alloc_used || !custom_free_used) {
        fprintf(stderr, "asynctest_harness: the custom stack functions were not used\n");
        return 1;
    }
    printf("test_ASYNC_set_mem_functions: PASS (first, custom allocator used)\n");
    return openssl_asynctest_main(argc, argv);
}
