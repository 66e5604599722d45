"""Prints an account SAS token for Azurite's development account (standard library
only), signed the way Azure signs one: the tests' stand-in for a token an operator
gets from `az storage account generate-sas`.

Usage: azurite_sas.py PERMISSIONS EXPIRY   (e.g. racwdl 2030-01-01T00:00:00Z)"""
import base64
import hashlib
import hmac
import sys
import urllib.parse

ACCOUNT = "devstoreaccount1"
KEY = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")

permissions, expiry = sys.argv[1], sys.argv[2]
version, services, resource_types, protocol = "2021-08-06", "b", "sco", "https,http"
fields = [ACCOUNT, permissions, services, resource_types, "", expiry, "", protocol, version, ""]
signature = base64.b64encode(hmac.new(KEY, ("\n".join(fields) + "\n").encode(), hashlib.sha256).digest()).decode()
query = {"sv": version, "ss": services, "srt": resource_types, "sp": permissions, "se": expiry, "spr": protocol, "sig": signature}
print(urllib.parse.urlencode(query))
