package config

import (
	"errors"
	"regexp"
	"strings"
)

var (
	dottedName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	errNoModule = errors.New("names no module before the colon")
)

// checkAppSpec checks the shape of app.module: a dotted module name,
// then optionally ":" and a dotted name, itself optionally a call
// "name(...)". The arguments of a call are left to the Python side,
// which takes only literals, and which --check runs.
func checkAppSpec(spec string) error {
	mod, expr, hasColon := strings.Cut(spec, ":")
	if mod == "" {
		return errNoModule
	}
	if !dottedName.MatchString(mod) {
		return errors.New("is not a module name (dotted Python identifiers, no path or .py)")
	}
	if strings.HasSuffix(mod, ".py") {
		return errors.New("names a file: name the module, without .py")
	}
	if !hasColon {
		return nil
	}
	name, args, isCall := strings.Cut(expr, "(")
	if !dottedName.MatchString(name) {
		return errors.New("names no Python identifier after the colon")
	}
	if isCall && !strings.HasSuffix(args, ")") {
		return errors.New("opens a call with ( and does not close it")
	}
	return nil
}
