package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFlaskApp(t *testing.T) {
	s := startSuite(t, suiteOpts{limits: `max_body = "16m"`})
	c := s.client()

	t.Run("GET JSON", func(t *testing.T) {
		status, body := get(t, c, s.http+"/hello")
		if status != 200 || !strings.Contains(body, `"message":"hello"`) {
			t.Errorf("GET /hello = %d %q, want 200 with message hello", status, body)
		}
	})
	t.Run("POST JSON", func(t *testing.T) {
		resp, err := c.Post(s.http+"/echo", "application/json", strings.NewReader(`{"a":[1,2,3],"b":"ü"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Got    map[string]any `json:"got"`
			Length int            `json:"length"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || got.Got["b"] != "ü" || got.Length != 22 {
			t.Errorf("POST /echo = %d %+v, want 200 echoing the body", resp.StatusCode, got)
		}
	})
	t.Run("5 MB multipart upload", func(t *testing.T) {
		data := bytes.Repeat([]byte("0123456789abcdef"), 5<<20/16)
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("title", "big")
		fw, _ := mw.CreateFormFile("file", "big.bin")
		fw.Write(data)
		mw.Close()
		resp, err := c.Post(s.http+"/upload", mw.FormDataContentType(), &body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		sum := sha256.Sum256(data)
		if resp.StatusCode != 200 || !strings.Contains(string(b), hex.EncodeToString(sum[:])) || !strings.Contains(string(b), `"title":"big"`) {
			t.Errorf("POST /upload = %d %s, want 200 with sha256 %x", resp.StatusCode, b, sum)
		}
	})
	t.Run("chunked upload", func(t *testing.T) {
		data := bytes.Repeat([]byte("x"), 3<<20)
		// An io.Reader of unknown length makes the client send chunked.
		resp, err := c.Post(s.http+"/slurp", "application/octet-stream", io.MultiReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), fmt.Sprintf(`"size":%d`, len(data))) {
			t.Errorf("chunked POST /slurp = %d %s, want 200 size %d", resp.StatusCode, b, len(data))
		}
	})
	t.Run("big body the app never reads, big answer", func(t *testing.T) {
		// Regression: the worker must take the whole body off the socket
		// even when the app ignores it, or edged (still writing the body)
		// and the worker (writing the answer) wait on each other.
		resp, err := c.Post(s.http+"/big?n=4000000", "application/octet-stream", bytes.NewReader(make([]byte, 6<<20)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 4000000 {
			t.Errorf("POST /big = %d with %d bytes, want 200 with 4000000", resp.StatusCode, len(b))
		}
		if status, _ := get(t, c, s.http+"/hello"); status != 200 {
			t.Errorf("GET /hello after /big = %d", status)
		}
	})
	t.Run("streamed response", func(t *testing.T) {
		status, body := get(t, c, s.http+"/stream?n=500")
		if status != 200 || strings.Count(body, "\n") != 500 || !strings.HasSuffix(body, "chunk 499\n") {
			t.Errorf("GET /stream = %d, %d lines, want 200 and 500 lines", status, strings.Count(body, "\n"))
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp, err := c.Head(s.http + "/hello")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("HEAD /hello = %d, body %d bytes, type %q; want 200, no body, application/json", resp.StatusCode, len(b), resp.Header.Get("Content-Type"))
		}
	})
	t.Run("404", func(t *testing.T) {
		if status, _ := get(t, c, s.http+"/no/such/page"); status != 404 {
			t.Errorf("GET /no/such/page = %d, want 404", status)
		}
	})
	t.Run("exception is a 500 for that request only", func(t *testing.T) {
		if status, body := get(t, c, s.http+"/boom"); status != 500 {
			t.Errorf("GET /boom = %d %q, want 500", status, body)
		}
		for i := 0; i < 5; i++ {
			if status, _ := get(t, c, s.http+"/hello"); status != 200 {
				t.Errorf("GET /hello after /boom = %d, want 200", status)
			}
		}
		// The app's traceback, one event of the worker's log (written
		// once the app's output goes quiet).
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(s.out.String(), "boom: the app failed on purpose") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		var found bool
		var tbID, accessID string
		for _, line := range strings.Split(s.out.String(), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil && ev["log"] == "access" && ev["path"] == "/boom" {
				accessID, _ = ev["request_id"].(string)
			}
			if !strings.Contains(line, "boom: the app failed on purpose") {
				continue
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Errorf("the traceback is not in a JSON event: %q", line)
				continue
			}
			tb, _ := ev["traceback"].(string)
			if ev["level"] == "error" && strings.Contains(tb, "Traceback (most recent call last)") && ev["worker"] != nil {
				found = true
				tbID, _ = ev["request_id"].(string)
			}
		}
		if !found {
			t.Errorf("the traceback is not one error event of a worker in the log")
		}
		// Flask logs it through wsgi.errors: the event names the request,
		// as the access log does.
		if tbID == "" || tbID != accessID {
			t.Errorf("the traceback's request_id %q, the access log's %q: want the same id", tbID, accessID)
		}
	})
	t.Run("environ", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.http+"/environ?q=a%20b&x=1", nil)
		req.Header.Set("X-Custom", "v1")
		req.Header.Set("X_Custom", "forged")
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		env := appEnviron(t, c, req)
		want := map[string]string{
			"REQUEST_METHOD": "GET", "PATH_INFO": "/environ", "QUERY_STRING": "q=a%20b&x=1",
			"HTTP_X_CUSTOM": "v1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
			"HTTP_X_FORWARDED_PROTO": "http", "SCRIPT_NAME": "",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("environ[%s] = %q, want %q", k, env[k], v)
			}
		}
		// No proxy is trusted by default: a client's own X-Forwarded-For
		// is replaced, never believed.
		if env["HTTP_X_FORWARDED_FOR"] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want %q", env["HTTP_X_FORWARDED_FOR"], "127.0.0.1")
		}
	})
	t.Run("200 concurrent clients", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := cl.Get(fmt.Sprintf("%s/hello?i=%d", s.http, i))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("client %d: status %d", i, resp.StatusCode)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestPEP3333 runs the app wrapped in wsgiref.validate.validator, which
// raises on any breach of the spec by the server or the app: a breach
// turns into a 500 here.
func TestPEP3333(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "flaskapp:validated", workers: 1})
	c := s.client()
	for _, path := range []string{"/hello", "/stream?n=3", "/environ", "/gone", "/nope"} {
		status, body := get(t, c, s.http+path)
		if status >= 500 {
			t.Errorf("GET %s = %d %q under the validator", path, status, body)
		}
	}
	resp, err := c.Post(s.http+"/echo", "application/json", strings.NewReader(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /echo = %d under the validator", resp.StatusCode)
	}
	if strings.Contains(s.out.String(), "AssertionError") {
		t.Errorf("the validator found a breach:\n%s", tail(s.out.String(), 30))
	}
}

// TestTrustedProxy checks that X-Forwarded-* from a configured proxy are
// believed: the app sees the real client.
func TestTrustedProxy(t *testing.T) {
	s := startSuite(t, suiteOpts{workers: 1, extra: "[proxy]\ntrusted = [\"127.0.0.0/8\"]"})
	req, _ := http.NewRequest("GET", s.http+"/environ", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 127.0.0.5")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "shop.example")
	env := appEnviron(t, s.client(), req)
	want := map[string]string{
		"REMOTE_ADDR":            "203.0.113.9",
		"HTTP_X_FORWARDED_FOR":   "203.0.113.9, 127.0.0.5, 127.0.0.1",
		"wsgi.url_scheme":        "https",
		"HTTP_X_FORWARDED_PROTO": "https",
		"HTTP_X_FORWARDED_HOST":  "shop.example",
		"SERVER_NAME":            "shop.example",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("environ[%s] = %q, want %q", k, env[k], v)
		}
	}
}

// appEnviron sends req to the Flask app's /environ and returns the string
// entries of the WSGI environ it saw.
func appEnviron(t *testing.T, c *http.Client, req *http.Request) map[string]string {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("%s %s: %d, not an environ: %v", req.Method, req.URL, resp.StatusCode, err)
	}
	return env
}

// TestFlaskFactory: a Flask app built by create_app(), as Flask's
// tutorial builds one, with its session cookie and redirects.
func TestFlaskFactory(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "flaskfactory:create_app('staging')", workers: 2})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	for range 3 {
		get(t, c, s.http+"/visit")
	}
	if code, body := get(t, c, s.http+"/"); code != 200 || !strings.Contains(body, `"env":"staging"`) || !strings.Contains(body, `"visits":3`) {
		t.Errorf("GET / = %d %s, want the factory's env and 3 visits", code, body)
	}
}

// TestAppFactory: app.module takes gunicorn's forms, a factory with
// literal arguments and a module alone (its "application") among them.
func TestAppFactory(t *testing.T) {
	for _, tt := range []struct{ module, want string }{
		{"factory:create_app('from the factory')", "from the factory"},
		{"factory:create_app()", "hello"},
		{"factory", "application"},
	} {
		t.Run(tt.module, func(t *testing.T) {
			s := startSuite(t, suiteOpts{module: tt.module, workers: 1})
			if code, body := get(t, s.client(), s.http+"/"); code != 200 || body != tt.want {
				t.Errorf("GET / = %d %q, want 200 %q", code, body, tt.want)
			}
		})
	}
}
