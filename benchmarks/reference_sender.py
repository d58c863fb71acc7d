"""The minimal reference sender the send benchmark compares against: csv reader, HMAC, dict,
json, one HTTP connection. No journal, no retries, no suppressions: a floor, not a product."""

import csv
import hashlib
import hmac
import http.client
import json
import os
import sys
import urllib.parse

host = urllib.parse.urlsplit(os.environ["SENDGRID_API_HOST"])
secret = os.environ["NEWSLETTER_SECRET"].encode()
html, text = open(sys.argv[2]).read(), "plain text twin"  # noqa: SIM115
connection = http.client.HTTPConnection(host.hostname, host.port)
headers = {"Authorization": "Bearer " + os.environ["SENDGRID_API_KEY"], "Content-Type": "application/json"}


def post(people):
    body = {
        "from": {"email": "news@x.example"},
        "subject": "Hi",
        "personalizations": people,
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
    }
    connection.request("POST", "/v3/mail/send", json.dumps(body), headers)
    connection.getresponse().read()


batch = []
with open(sys.argv[1], newline="") as handle:
    for row in csv.DictReader(handle):
        token = hmac.new(secret, row["email"].lower().encode(), hashlib.sha256).hexdigest()
        batch.append({"to": [{"email": row["email"]}], "substitutions": {"NAME": row["first_name"], "TOKEN": token}})
        if len(batch) == 1000:
            post(batch)
            batch = []
if batch:
    post(batch)
