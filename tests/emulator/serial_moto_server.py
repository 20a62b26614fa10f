"""moto_server answering one request at a time.

DynamoDB's conditional writes are atomic in AWS. moto's threaded server checks a condition and
writes without a lock, so two requests racing in two threads can both pass `attribute_not_exists`.
The recovery tests race real requests against conditional writes; with requests served one after
another each write is atomic again, while the clients still interleave between their requests
exactly as they would against AWS. (Without threads werkzeug speaks HTTP/1.0 and closes every
connection, so no client's idle keep-alive connection can hold the server.)

Usage: serial_moto_server.py [moto_server arguments]
"""

import sys

from moto import server

_run_simple = server.run_simple


def _serial(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


server.run_simple = _serial

if __name__ == "__main__":
    server.main(sys.argv[1:])
