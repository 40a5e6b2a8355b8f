#!/usr/bin/env bash
# Installs the OpenSSL-ABI C library the way C libraries install, into a
# prefix (default /usr/local; DESTDIR is honoured, for packaging):
#
#   PREFIX/include/stackjob/async.h          the API and the extensions
#   PREFIX/include/stackjob/openssl/async.h  <openssl/async.h> for OpenSSL code
#   PREFIX/lib/libstackjob_openssl.so.0.1.0  soname libstackjob_openssl.so.0,
#            libstackjob_openssl.so.0 -> …    and the usual symlinks
#            libstackjob_openssl.so   -> …
#   PREFIX/lib/libstackjob_openssl.a
#   PREFIX/lib/pkgconfig/stackjob-async.pc
#
# Then: cc app.c $(pkg-config --cflags --libs stackjob-async)
# (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix pkg-config does
# not search). Usage: scripts/install-openssl-abi.sh [PREFIX]
#
# The equivalent of `cargo cinstall` (cargo-c), without building cargo-c
# (minutes on a fresh machine): the release build gets the versioned soname
# through STACKJOB_OPENSSL_SONAME (openssl-abi/build.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
PREFIX=${1:-/usr/local}
LIBDIR=${LIBDIR:-$PREFIX/lib}
DEST=${DESTDIR:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
VERSION=$(sed -nE 's/^version = "(.*)"/\1/p' openssl-abi/Cargo.toml | head -1)
MAJOR=${VERSION%%.*}
SONAME=libstackjob_openssl.so.$MAJOR

STACKJOB_OPENSSL_SONAME=$SONAME cargo build --release -p stackjob-openssl
OUT=$CARGO_TARGET_DIR/release
got=$(readelf -d "$OUT/libstackjob_openssl.so" | sed -nE 's/.*Library soname: \[(.*)\]/\1/p')
if [ "$got" != "$SONAME" ]; then
    echo "error: built library has soname '$got', not $SONAME (openssl-abi/build.rs)" >&2
    exit 1
fi

install -d "$DEST$PREFIX/include/stackjob/openssl" "$DEST$LIBDIR/pkgconfig"
install -m 644 openssl-abi/include/stackjob/async.h "$DEST$PREFIX/include/stackjob/async.h"
install -m 644 openssl-abi/include/stackjob/openssl/async.h "$DEST$PREFIX/include/stackjob/openssl/async.h"
install -m 755 "$OUT/libstackjob_openssl.so" "$DEST$LIBDIR/libstackjob_openssl.so.$VERSION"
ln -sf "libstackjob_openssl.so.$VERSION" "$DEST$LIBDIR/$SONAME"
ln -sf "$SONAME" "$DEST$LIBDIR/libstackjob_openssl.so"
install -m 644 "$OUT/libstackjob_openssl.a" "$DEST$LIBDIR/libstackjob_openssl.a"
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@LIBDIR@|$LIBDIR|" -e "s|@VERSION@|$VERSION|" \
    openssl-abi/stackjob-async.pc.in >"$DEST$LIBDIR/pkgconfig/stackjob-async.pc"
echo "installed stackjob-async $VERSION into $DEST$PREFIX (soname $SONAME)"
