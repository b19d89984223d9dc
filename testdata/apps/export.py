"""A Flask app whose one route serialises a large JSON document: about
5 MB, the CPU cost the chapter calls serialisation overhead."""

from flask import Flask, Response
import json

app = Flask(__name__)
ROWS = [{"id": i, "name": "item %d" % i, "price": i * 1.25, "tags": ["a", "b", "c"], "stock": i % 17}
        for i in range(60000)]


@app.get("/export.json")
def export():
    return Response(json.dumps(ROWS), mimetype="application/json")


@app.get("/compute")
def compute():
    # As much CPU as the export, none of it JSON.
    n = sum(i * i % 7 for i in range(4_000_000))
    return Response(str(n), mimetype="text/plain")
