package worker

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAppKeyJudge runs edged_worker.appkey on Flask apps whose keys come
// from each place a key can come from.
func TestAppKeyJudge(t *testing.T) {
	py := interpreter(t)
	if err := exec.Command(py, "-c", "import flask").Run(); err != nil {
		t.Skipf("!!! SKIPPING: %s cannot import flask (make deps) !!!", py)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keyed.py"), []byte(`import os
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

def make(how):
    app = Flask(__name__)
    if how == "literal":
        app.secret_key = "Wq8pZ3nL0vR7tY2kB5xM9cF4hJ6sD1gA8eU3oI0rT5yN2"
    elif how == "default":
        app.config["SECRET_KEY"] = "change-me"
    elif how == "env":
        app.secret_key = os.environ["APP_KEY"]
    elif how == "weak":
        app.secret_key = os.environ["WEAK_KEY"]
    elif how == "process":
        app.secret_key = os.urandom(32)
    elif how == "jwt":
        app.secret_key = os.environ["APP_KEY"]
        app.config["JWT_SECRET_KEY"] = "secret"
    return app

def wrapped():
    app = make("env")
    return ProxyFix(app)
`), 0o644)
	script := `
import json, os, sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
os.environ["APP_KEY"] = "pR7mX2vQ9kL4sT8nB1cZ6wF3hY0jD5gE7aU2oI9rT4yN1e"
os.environ["WEAK_KEY"] = "0123456789abcdef"
from edged_worker import appkey
import keyed
out = {}
for how in ["literal", "default", "env", "weak", "process", "jwt"]:
    out[how] = appkey.judge(keyed.make(how), sys.argv[2], credentials={"APP_KEY"} if how == "jwt" else ())
out["wrapped"] = appkey.judge(keyed.wrapped(), sys.argv[2])
out["none"] = appkey.judge(lambda e, s: [], sys.argv[2])
print(json.dumps(out))
`
	out, err := exec.Command(py, "-c", script, pyPackage(t), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got map[string]*struct {
		Source, Where, Key string
		Weak               bool
		Fingerprint        int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, tt := range []struct {
		how, source, where, key string
		weak                    bool
	}{
		{"literal", "literal", "keyed.py:8", "SECRET_KEY", false},
		{"default", "default", "keyed.py:10", "SECRET_KEY", true},
		{"env", "environment", "APP_KEY", "SECRET_KEY", false},
		{"weak", "environment", "WEAK_KEY", "SECRET_KEY", true},
		{"process", "process", "", "SECRET_KEY", false},
		// The worst of the keys is told: the extension's default.
		{"jwt", "default", "keyed.py:19", "JWT_SECRET_KEY", true},
		{"wrapped", "environment", "APP_KEY", "SECRET_KEY", false},
	} {
		g := got[tt.how]
		if g == nil || g.Source != tt.source || g.Where != tt.where || g.Key != tt.key || g.Weak != tt.weak {
			t.Errorf("%s: %+v, want source %s at %q, key %s, weak %v", tt.how, g, tt.source, tt.where, tt.key, tt.weak)
		}
	}
	if got["none"] != nil {
		t.Errorf("a plain WSGI function: %+v, want no report", got["none"])
	}
	if got["env"].Fingerprint == got["literal"].Fingerprint && got["env"].Fingerprint == got["process"].Fingerprint {
		t.Errorf("three keys, one fingerprint")
	}
}
