#!/bin/sh
# bootbusctl in the initramfs, where no console-script entry point is installed.
exec /usr/bin/python3 -c 'import sys; from bootbus.ctl import main; sys.argv[0] = "bootbusctl"; sys.exit(main())' "$@"
