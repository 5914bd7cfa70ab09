#!/usr/bin/env python3
"""Times the console's pages against a running server and weighs them.

Signs in through the console's own form (so the requests carry the session cookie, as a
browser's do), then GETs each page REQUESTS times on one keep-alive connection after WARMUP
requests, and prints one JSON line per page: the server's time to the full answer (p50, p99,
max, in ms, measured at the client on loopback) and the page's weight (its HTML, and the
stylesheets and scripts it links, in bytes, uncompressed). Pages are given as arguments
(paths; `{message}` is replaced by the newest message's id). Used by tools/bench-console.sh.
"""

import http.client
import json
import os
import re
import statistics
import sys
import time
import urllib.parse

URL = urllib.parse.urlparse(os.environ.get("DMS_URL", "http://127.0.0.1:3300"))
PASSWORD = os.environ["DMS_ADMIN_PASSWORD"]
REQUESTS = int(os.environ.get("REQUESTS", "300"))
WARMUP = int(os.environ.get("WARMUP", "20"))


def connect():
    return http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)


def cookies_of(response, jar):
    for header, value in response.getheaders():
        if header.lower() == "set-cookie":
            name, _, rest = value.partition("=")
            jar[name] = rest.split(";", 1)[0]


def cookie_header(jar):
    return "; ".join(f"{name}={value}" for name, value in jar.items() if value)


def sign_in():
    jar = {}
    conn = connect()
    conn.request("GET", "/console/login")
    response = conn.getresponse()
    response.read()
    cookies_of(response, jar)
    body = urllib.parse.urlencode(
        {"username": "admin", "password": PASSWORD, "csrf": jar["dms_csrf"], "next": "/console/"}
    )
    conn.request(
        "POST",
        "/console/login",
        body=body,
        headers={"content-type": "application/x-www-form-urlencoded", "cookie": cookie_header(jar)},
    )
    response = conn.getresponse()
    response.read()
    if response.status != 303:
        sys.exit(f"sign-in failed: {response.status}")
    cookies_of(response, jar)
    # The API takes the same cookie: the newest message, for the message page.
    conn.request("GET", "/messages?box=sent&limit=1", headers={"cookie": cookie_header(jar)})
    response = conn.getresponse()
    items = json.loads(response.read()).get("items", [])
    return conn, jar, (items[0]["id"] if items else "")


def get(conn, jar, path):
    # The sign-in page is timed as a visitor sees it (signed in, it redirects).
    cookies = {} if path.startswith("/console/login") else jar
    conn.request("GET", path, headers={"cookie": cookie_header(cookies)})
    response = conn.getresponse()
    body = response.read()
    return response.status, body


def weight(conn, jar, html):
    text = html.decode("utf-8", "replace")
    assets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', text)
    assets += re.findall(r'<script type="module" src="([^"]+)"', text)
    total = len(html)
    for asset in assets:
        status, body = get(conn, jar, asset)
        if status != 200:
            sys.exit(f"{asset}: {status}")
        total += len(body)
        # Modules the page's scripts import (`from "./console.js"`), once each.
        for imported in re.findall(rb'from "\./([^"]+)"', body):
            path = "/console/assets/" + imported.decode()
            if path not in assets:
                assets.append(path)
    return len(html), total, assets


def main():
    conn, jar, message = sign_in()
    for page in sys.argv[1:]:
        path = page.replace("{message}", message)
        times = []
        for index in range(WARMUP + REQUESTS):
            started = time.perf_counter()
            status, body = get(conn, jar, path)
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                sys.exit(f"{path}: {status}: {body[:300]!r}")
            if index >= WARMUP:
                times.append(elapsed)
        times.sort()
        html, total, assets = weight(conn, jar, body)
        print(
            json.dumps(
                {
                    "page": page,
                    "requests": REQUESTS,
                    "p50_ms": round(statistics.median(times), 2),
                    "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
                    "max_ms": round(times[-1], 2),
                    "html_bytes": html,
                    "total_bytes": total,
                    "assets": len(assets),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
