package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Recognisable secrets: any of them in output is a leak.
const (
	secretToken    = "tok-SECRET-4f9c2e"
	secretPassword = "pw-SECRET-81ad77"
)

func secretEnv(extra map[string]string) func(string) string {
	env := map[string]string{
		"API_TOKEN": secretToken,
		"REDIS_URL": "redis://:" + secretPassword + "@127.0.0.1:1/0",
	}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range []string{secretToken, secretPassword} {
		if strings.Contains(text, s) {
			t.Errorf("%s shows a secret (%s):\n%s", what, s, text)
		}
	}
}

func runCLI(getenv func(string) string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, getenv, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestHelpExitsZeroWithoutSecrets: every way of asking for help is a success,
// prints on stdout, and shows value names and defaults, never the current
// value of a secret.
func TestHelpExitsZeroWithoutSecrets(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"}, {"all", "-h"}, {"all", "--help"}, {"api", "-h"}, {"worker", "-h"},
		{"deliveries", "-h"}, {"deliveries", "list", "-h"}, {"deliveries", "show", "--help"},
		{"deliveries", "redeliver", "-h"}, {"deliveries", "cancel", "-h"},
		{"queue", "-h"}, {"queue", "stats", "-h"}, {"enqueue", "-h"},
	} {
		out, errOut, err := runCLI(secretEnv(nil), args...)
		if err != nil {
			t.Errorf("%q: err %v, want success", args, err)
		}
		if !strings.Contains(out, "usage") {
			t.Errorf("%q: no usage on stdout: %q (stderr %q)", args, out, errOut)
		}
		assertNoSecret(t, strings.Join(args, " "), out+errOut)
	}
}

func TestUsageValueNamesAndModes(t *testing.T) {
	out, _, err := runCLI(secretEnv(nil), "all", "-h")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-api-token TOKEN", "-redis-url URI", "-worker-concurrency N", "-delivery-timeout DURATION", "-api-token-file FILE", "-redis-url-file FILE", "-pprof-addr ADDR"} {
		if !strings.Contains(out, want) {
			t.Errorf("all -h lacks %q", want)
		}
	}
	if strings.Contains(out, "`") || strings.Contains(out, " string\n") {
		t.Errorf("all -h shows back quotes or a bare 'string' value name:\n%s", out)
	}
	api, _, _ := runCLI(secretEnv(nil), "api", "-h")
	worker, _, _ := runCLI(secretEnv(nil), "worker", "-h")
	for _, c := range []struct {
		text, flag string
		want       bool
	}{
		{api, "-api-token ", true}, {api, "-enqueue-min-replicas ", true}, {api, "-worker-concurrency ", false},
		{api, "-webhook-ca-file ", false}, {api, "-poll-interval ", false},
		{worker, "-worker-concurrency ", true}, {worker, "-webhook-ca-file ", true}, {worker, "-api-token ", false},
		{worker, "-api-addr ", false}, {worker, "-enqueue-min-replicas ", false},
	} {
		if strings.Contains(c.text, c.flag) != c.want {
			t.Errorf("%q listed = %v, want %v", c.flag, !c.want, c.want)
		}
	}
	if !strings.Contains(api, `default ":9091"`) || !strings.Contains(worker, `default ":9090"`) {
		t.Errorf("METRICS_ADDR defaults per mode not shown: api\n%s\nworker\n%s", api, worker)
	}
}

// TestMistypedFlagShowsNoSecret: a usage error exits 2, prints one line that
// names the help command, and no secret.
func TestMistypedFlagShowsNoSecret(t *testing.T) {
	for _, args := range [][]string{{"all", "-wroker-concurrency", "3"}, {"api", "-nope"}, {"deliveries", "list", "--sate", "x"}, {"queue", "stats", "--tpo", "3"}} {
		out, errOut, err := runCLI(secretEnv(nil), args...)
		if exitCode(err) != 2 {
			t.Errorf("%q: exit %d (%v), want 2", args, exitCode(err), err)
		}
		if err == nil || !strings.Contains(err.Error(), "-h") {
			t.Errorf("%q: error %v does not point at -h", args, err)
		}
		assertNoSecret(t, strings.Join(args, " "), out+errOut+errorLine(err))
	}
}

// TestSubcommandHelpNeedsNoRedis: help and usage errors come before any
// Redis connection or REDIS_URL check.
func TestSubcommandHelpNeedsNoRedis(t *testing.T) {
	noEnv := func(string) string { return "" }
	if out, _, err := runCLI(noEnv, "deliveries", "-h"); err != nil || !strings.HasPrefix(out, "usage: dispatcher deliveries") {
		t.Errorf("deliveries -h: %v %q", err, out)
	}
	for _, args := range [][]string{{"deliveries", "frobnicate"}, {"deliveries"}, {"queue", "frobnicate"}} {
		_, errOut, err := runCLI(noEnv, args...)
		if exitCode(err) != 2 || strings.Contains(err.Error(), "REDIS_URL") || !strings.Contains(errOut, "usage") {
			t.Errorf("%q: exit %d, err %v, stderr %q; want exit 2 with the usage and no REDIS_URL demand", args, exitCode(err), err, errOut)
		}
	}
	if _, _, err := runCLI(noEnv, "deliveries", "list"); exitCode(err) != 2 || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("deliveries list without REDIS_URL: exit %d, %v", exitCode(err), err)
	}
}

// TestFlagsAfterPositional: "deliveries show ID --redis-url URL" honours the
// flag after the id.
func TestFlagsAfterPositional(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the command must try this address and fail on it
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"deliveries", "show", "some-id", "--redis-url", "redis://" + addr + "/0"}, func(string) string { return "" }, &out, &errOut)
	if err == nil || exitCode(err) != 1 || strings.Contains(err.Error(), "REDIS_URL (or") {
		t.Fatalf("show ID --redis-url: err %v (exit %d); want a connection failure, not a missing-setting error", err, exitCode(err))
	}
	pos, err := parseFlags(newTestFlagSet(), []string{"a", "--json", "b", "--", "--c"}, &out)
	if err != nil || strings.Join(pos, " ") != "a b --c" {
		t.Errorf("positional = %q, %v; want [a b --c]", pos, err)
	}
}

func TestVersionAndExitCodes(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		out, _, err := runCLI(secretEnv(nil), args...)
		if err != nil || !strings.HasPrefix(out, "dispatcher ") {
			t.Errorf("%q: %q %v", args, out, err)
		}
	}
	_, _, err := runCLI(secretEnv(nil), "frobnicate")
	if exitCode(err) != 2 {
		t.Errorf("unknown command: exit %d", exitCode(err))
	}
	_, _, err = runCLI(secretEnv(nil), "check-url", "https://example.com:0/x")
	if exitCode(err) != 1 {
		t.Errorf("refused URL: exit %d", exitCode(err))
	}
}

func TestErrorLineHasOnePrefix(t *testing.T) {
	_, _, err := runCLI(func(string) string { return "" }, "deliveries", "list", "--cursor", "x:y:z", "--redis-url", "redis://127.0.0.1:1/0")
	if err == nil {
		t.Fatal("no error")
	}
	if line := errorLine(err); strings.HasPrefix(line, "dispatcher: dispatcher:") || !strings.Contains(line, "invalid cursor") {
		t.Errorf("doubled prefix: %q", line)
	}
	if line := errorLine(errString("dispatcher: queue unavailable")); line != "dispatcher: queue unavailable" {
		t.Errorf("errorLine = %q", line)
	}
}

func newTestFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.Bool("json", false, "")
	return fs
}

type errString string

func (e errString) Error() string { return string(e) }

func TestCheckURLPortZero(t *testing.T) {
	out, _, err := runCLI(func(string) string { return "" }, "check-url", "https://example.com:0/x")
	if err == nil || strings.Contains(out, "leading zero") || !strings.Contains(out, "1-65535") {
		t.Errorf("port 0: %v %q; want refused as outside 1-65535", err, out)
	}
}

// TestSecretsFromFiles: API_TOKEN_FILE and REDIS_URL_FILE supply the secrets;
// both a value and a file is an error that shows neither.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	tokenFile, urlFile := filepath.Join(dir, "token"), filepath.Join(dir, "url")
	os.WriteFile(tokenFile, []byte(secretToken+"\n"), 0o600)
	os.WriteFile(urlFile, []byte("redis://:"+secretPassword+"@127.0.0.1:6379/0\n"), 0o600)
	env := map[string]string{"API_TOKEN_FILE": tokenFile, "REDIS_URL_FILE": urlFile}
	cfg, _, err := loadConfig("api", nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIToken != secretToken || !strings.Contains(cfg.RedisURL, secretPassword) {
		t.Errorf("secrets not read from files: token %q", cfg.APIToken)
	}
	env["API_TOKEN"] = "other"
	_, _, err = loadConfig("api", nil, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "both set") {
		t.Errorf("API_TOKEN and API_TOKEN_FILE: %v, want an error", err)
	}
	assertNoSecret(t, "error", err.Error())
	if cfg, _, err := loadConfig("api", []string{"-api-token", "flag-wins"}, func(k string) string { return env[k] }); err != nil || cfg.APIToken != "flag-wins" {
		t.Errorf("flag over file: %q %v", cfg.APIToken, err)
	}
}

// TestPortClashNamesSettingBeforeStart: a taken METRICS_ADDR fails before
// anything logs "started" and names the setting.
func TestPortClashNamesSettingBeforeStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := map[string]string{"METRICS_ADDR": ln.Addr().String(), "API_ADDR": "127.0.0.1:0"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut lockedBuffer
	err = run(ctx, []string{"all"}, func(k string) string { return env[k] }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "METRICS_ADDR") || !strings.Contains(err.Error(), "-metrics-addr") {
		t.Fatalf("err = %v, want it to name METRICS_ADDR", err)
	}
	if strings.Contains(out.String(), "started") || strings.Contains(out.String(), "listening") {
		t.Errorf("logged a start before failing:\n%s", out.String())
	}
}
