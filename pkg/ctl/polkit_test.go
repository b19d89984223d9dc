package ctl

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// rulesFile is the polkit rule the packages install, letting the
// "edgeadm" group manage edged's units without root.
var rulesFile = filepath.Join("..", "..", "packaging", "polkit", "50-edged.rules")

// managerVerbs maps each method of manager to the verb systemd hands
// polkit for it (action org.freedesktop.systemd1.manage-units), "" for
// one that asks no manage-units right: reads, and the unit files, which
// polkit grants as another action that the rule leaves alone.
var managerVerbs = map[string]string{
	"ListUnitsByPatternsContext":   "",
	"GetUnitPropertiesContext":     "",
	"GetUnitTypePropertiesContext": "",
	"StartUnitContext":             "start",
	"StopUnitContext":              "stop",
	"RestartUnitContext":           "restart",
	"ResetFailedUnitContext":       "reset-failed",
	"EnableUnitFilesContext":       "",
	"DisableUnitFilesContext":      "",
	"Close":                        "",
}

// grantedVerbs are what the rule must allow: what edgectl calls, and
// reload, for `systemctl reload edged`, which its comment promises.
func grantedVerbs(t *testing.T) []string {
	t.Helper()
	verbs := []string{"reload"}
	mt := reflect.TypeFor[manager]()
	for i := 0; i < mt.NumMethod(); i++ {
		name := mt.Method(i).Name
		verb, ok := managerVerbs[name]
		if !ok {
			t.Fatalf("manager.%s is not in managerVerbs: say which polkit verb systemd asks for it, and allow it in %s if edgeadm needs it", name, rulesFile)
		}
		if verb != "" && !slices.Contains(verbs, verb) {
			verbs = append(verbs, verb)
		}
	}
	sort.Strings(verbs)
	return verbs
}

// polkitCase is one request the rule is asked about.
type polkitCase struct {
	Action string            `json:"action"`
	Groups []string          `json:"groups"`
	Detail map[string]string `json:"detail"`
}

// evalRules runs the rule file under node with a stand-in for polkitd's
// polkit object, and returns its answer to each case: "yes", or
// "not_handled" (and so an administrator's password).
func evalRules(t *testing.T, cases []polkitCase) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("SKIPPED: node is not installed, so %s is not evaluated (apt-get install nodejs; make deps does)", rulesFile)
	}
	const harness = `
const fs = require("fs");
const rules = [];
const polkit = {
  Result: {YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep",
           AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep", NOT_HANDLED: "not_handled"},
  addRule: function(f) { rules.push(f); },
  log: function() {},
};
new Function("polkit", fs.readFileSync(process.argv[1], "utf8"))(polkit);
const out = JSON.parse(fs.readFileSync(0, "utf8")).map(function(c) {
  const action = {id: c.action, lookup: function(k) { return c.detail[k]; }};
  const subject = {user: "ops", isInGroup: function(g) { return c.groups.indexOf(g) >= 0; }};
  for (const r of rules) {
    const res = r(action, subject);
    if (res !== undefined && res !== polkit.Result.NOT_HANDLED) return res;
  }
  return polkit.Result.NOT_HANDLED;
});
process.stdout.write(JSON.stringify(out));
`
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "-e", harness, rulesFile)
	cmd.Stdin = strings.NewReader(string(in))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("node on %s: %v\n%s", rulesFile, err, stderr.String())
	}
	var got []string
	if err := json.Unmarshal(b, &got); err != nil || len(got) != len(cases) {
		t.Fatalf("node on %s answered %q (%v), want %d answers", rulesFile, b, err, len(cases))
	}
	return got
}

// TestPolkitRule checks that the rule lets edgeadm do to edged's units
// exactly what edgectl and `systemctl reload edged` need, and nothing to
// any other unit or to anyone else.
func TestPolkitRule(t *testing.T) {
	granted := grantedVerbs(t)
	if want := []string{"reload", "reset-failed", "restart", "start", "stop"}; !slices.Equal(granted, want) {
		t.Errorf("edgectl asks for the verbs %v, the test knows %v: update the rule and this test together", granted, want)
	}
	const manage = "org.freedesktop.systemd1.manage-units"
	adm := []string{"users", "edgeadm"}
	type tc struct {
		name string
		c    polkitCase
		want string
	}
	var tcs []tc
	units := []string{"edged.service", "edged.socket", "edged-https.socket", "workerd.socket", "workerd@1.service", "workerd@12.service"}
	// Every verb systemd names for manage-units.
	verbs := []string{"start", "stop", "reload", "restart", "try-restart", "reload-or-restart", "reload-or-try-restart",
		"reset-failed", "kill", "kill-subgroup", "set-property", "clean", "freeze", "thaw", "ref", "verify-active", ""}
	for _, u := range units {
		for _, v := range verbs {
			want := "not_handled"
			if slices.Contains(granted, v) {
				want = "yes"
			}
			tcs = append(tcs, tc{u + " " + v, polkitCase{manage, adm, map[string]string{"unit": u, "verb": v}}, want})
		}
	}
	for _, u := range []string{"ssh.service", "workerd@.service", "workerd@x.service", "workerd@1.service.d", "edged.service ", "nginx.service", ""} {
		tcs = append(tcs, tc{"other unit " + u, polkitCase{manage, adm, map[string]string{"unit": u, "verb": "start"}}, "not_handled"})
	}
	tcs = append(tcs,
		tc{"not in edgeadm", polkitCase{manage, []string{"users"}, map[string]string{"unit": "workerd@1.service", "verb": "start"}}, "not_handled"},
		tc{"unit files", polkitCase{"org.freedesktop.systemd1.manage-unit-files", adm, map[string]string{"unit": "workerd@1.service", "verb": "start"}}, "not_handled"},
		tc{"no verb given", polkitCase{manage, adm, map[string]string{"unit": "workerd@1.service"}}, "not_handled"},
	)
	cases := make([]polkitCase, len(tcs))
	for i, c := range tcs {
		cases[i] = c.c
	}
	got := evalRules(t, cases)
	for i, c := range tcs {
		if got[i] != c.want {
			t.Errorf("%s: rule answers %q, want %q", c.name, got[i], c.want)
		}
	}
}
