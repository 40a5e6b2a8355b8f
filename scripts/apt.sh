# Sourced by the scripts that install Debian packages (not run on its own):
# `apt_install [apt-get install options] PACKAGE...` installs them, as root
# (through sudo when not root). Debian mirrors are sometimes caught
# mid-sync ("File has unexpected size ... Mirror sync in progress?"), which
# makes `apt-get update` fail for one index out of many, so the update is
# retried with a growing pause, and the install too; when the update still
# fails the install is tried with the lists it did fetch, and only a failed
# install stops the caller, with a message naming the packages.
# One `apt-get update` per process tree (STACKJOB_APT_UPDATED is exported).

stackjob_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

stackjob_apt_update() {
    [ -z "${STACKJOB_APT_UPDATED:-}" ] || return 0
    local try
    for try in 1 2 3 4; do
        if stackjob_as_root apt-get update -qq; then
            export STACKJOB_APT_UPDATED=1
            return 0
        fi
        echo "apt.sh: apt-get update failed (try $try of 4; a Debian mirror in mid-sync is the usual cause); retrying in $((try * 15)) s" >&2
        sleep $((try * 15))
    done
    echo "apt.sh: apt-get update kept failing; installing from the package lists it did fetch" >&2
    export STACKJOB_APT_UPDATED=1
}

apt_install() {
    stackjob_apt_update
    local try
    for try in 1 2 3; do
        if stackjob_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; then
            return 0
        fi
        echo "apt.sh: apt-get install $* failed (try $try of 3); updating the lists and retrying in $((try * 20)) s" >&2
        sleep $((try * 20))
        stackjob_as_root apt-get update -qq || true
    done
    echo "apt.sh: could not install $* with apt-get: install them by hand (apt-get install $*) and run this again" >&2
    return 1
}
