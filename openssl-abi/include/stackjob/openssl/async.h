/*
 * <openssl/async.h> for code written against OpenSSL, built with
 * `pkg-config --cflags stackjob-async` (which puts this directory's parent
 * on the include path): the same API from stackjob/async.h, with no
 * OpenSSL needed. Where OpenSSL's headers are installed too, its error
 * codes (<openssl/asyncerr.h>) come along, as with OpenSSL's own header.
 */
#ifndef OPENSSL_ASYNC_H
#include "../async.h"
#define OPENSSL_ASYNC_H
#define HEADER_ASYNC_H
#if defined(__has_include)
#if __has_include(<openssl/asyncerr.h>)
#include <openssl/asyncerr.h>
#endif
#endif
#endif
