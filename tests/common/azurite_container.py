"""Creates a blob container on an Azurite server with the well-known development
account (SharedKey signing, standard library only): the tests' setup step."""
import base64
import email.utils
import hashlib
import hmac
import http.client
import sys

ACCOUNT = "devstoreaccount1"
KEY = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")

port, container = int(sys.argv[1]), sys.argv[2]
date = email.utils.formatdate(usegmt=True)
version = "2025-01-05"
canonical_headers = f"x-ms-date:{date}\nx-ms-version:{version}\n"
resource = f"/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
to_sign = "\n".join(["PUT", "", "", "", "", "", "", "", "", "", "", ""]) + "\n" + canonical_headers + resource
signature = base64.b64encode(hmac.new(KEY, to_sign.encode(), hashlib.sha256).digest()).decode()
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
connection.request(
    "PUT",
    f"/{ACCOUNT}/{container}?restype=container",
    body=b"",
    headers={"x-ms-date": date, "x-ms-version": version, "Content-Length": "0", "Authorization": f"SharedKey {ACCOUNT}:{signature}"},
)
status = connection.getresponse().status
if status not in (201, 409):
    sys.exit(f"creating container {container}: HTTP {status}")
