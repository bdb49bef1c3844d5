#!/bin/sh
# Shell init: start the test client after bootbus-start.sh (pre-udev 00).
rm -f /run/bootbus-vmtest-client
PYTHONEXECUTABLE=/usr/bin/python3 setsid bash -c \
    'exec -a @vmclient /usr/bin/python3 /usr/lib/bootbus-vmtest/vmclient.py serve --ready-file /run/bootbus-vmtest-client' \
    < /dev/null > /dev/console 2>&1 &
_vmtest_wait=100
while [ ! -s /run/bootbus-vmtest-client ] && [ "$_vmtest_wait" -gt 0 ]; do
    sleep 0.1
    _vmtest_wait=$((_vmtest_wait - 1))
done
unset _vmtest_wait
