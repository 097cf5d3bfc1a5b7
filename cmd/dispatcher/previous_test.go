package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPreviousConfig(t *testing.T) {
	const pw = "pw-PREVIOUS-5e1d"
	dir := t.TempDir()
	file := filepath.Join(dir, "previous-url")
	if err := os.WriteFile(file, []byte("redis-cluster://:"+pw+"@127.0.0.1:7000,127.0.0.1:7001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		mode       string
		args       []string
		env        map[string]string
		wantURL    string
		wantShards int
		wantErr    string // "" means no error
	}{
		{"unset", "api", nil, nil, "", 1, ""},
		{"single", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis://:" + pw + "@127.0.0.1:6379/0"},
			"redis://:" + pw + "@127.0.0.1:6379/0", 1, ""},
		{"sentinel with shards", "all", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis-sentinel://127.0.0.1:26379?master=mymaster", "PREVIOUS_QUEUE_SHARDS": "16"},
			"redis-sentinel://127.0.0.1:26379?master=mymaster", 16, ""},
		{"cluster from file", "api", nil, map[string]string{"PREVIOUS_REDIS_URL_FILE": file, "PREVIOUS_QUEUE_SHARDS": "48"},
			"redis-cluster://:" + pw + "@127.0.0.1:7000,127.0.0.1:7001", 48, ""},
		{"flag wins over env and file", "api", []string{"--previous-redis-url", "redis://127.0.0.1:6390"},
			map[string]string{"PREVIOUS_REDIS_URL_FILE": file}, "redis://127.0.0.1:6390", 1, ""},
		{"bad scheme", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "postgres://u:" + pw + "@db"}, "", 0, "PREVIOUS_REDIS_URL is not a valid"},
		{"bad cluster", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis-cluster://:" + pw + "@nohostport"}, "", 0, "PREVIOUS_REDIS_URL is not a valid"},
		{"zero shards", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis://127.0.0.1:6379", "PREVIOUS_QUEUE_SHARDS": "0"}, "", 0, "PREVIOUS_QUEUE_SHARDS"},
		{"too many shards", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis://127.0.0.1:6379", "PREVIOUS_QUEUE_SHARDS": "5000"}, "", 0, "PREVIOUS_QUEUE_SHARDS"},
		{"itself", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis://127.0.0.1:6379", "REDIS_URL": "redis://127.0.0.1:6379"}, "", 0, "names this datastore itself"},
		{"same redis, shard counts sharing a queue", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis://127.0.0.1:6379", "REDIS_URL": "redis://127.0.0.1:6379", "PREVIOUS_QUEUE_SHARDS": "48", "QUEUE_SHARDS": "64"},
			"", 0, "share queue webhooks:"},
		{"other redis, shard counts sharing a queue", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis://127.0.0.1:6380", "REDIS_URL": "redis://127.0.0.1:6379", "PREVIOUS_QUEUE_SHARDS": "48", "QUEUE_SHARDS": "64"},
			"redis://127.0.0.1:6380", 48, ""},
		{"same redis, new shard count", "api", nil, map[string]string{"PREVIOUS_REDIS_URL": "redis://127.0.0.1:6379", "REDIS_URL": "redis://127.0.0.1:6379", "QUEUE_SHARDS": "4"},
			"redis://127.0.0.1:6379", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := loadConfig(tt.mode, tt.args, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), pw) {
					t.Errorf("the previous Redis password leaked: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PreviousRedisURL != tt.wantURL || cfg.PreviousShards != tt.wantShards {
				t.Errorf("PreviousRedisURL %q shards %d, want %q %d", cfg.PreviousRedisURL, cfg.PreviousShards, tt.wantURL, tt.wantShards)
			}
		})
	}
}

// Both files set is still an error without the flag.
func TestPreviousConfigURLAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "u")
	if err := os.WriteFile(file, []byte("redis://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PREVIOUS_REDIS_URL": "redis://127.0.0.1:2", "PREVIOUS_REDIS_URL_FILE": file}
	_, _, err := loadConfig("api", nil, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "PREVIOUS_REDIS_URL and PREVIOUS_REDIS_URL_FILE are both set") {
		t.Fatalf("err = %v, want both-set", err)
	}
}

// The usage text names the settings for the API only, and never shows a value.
func TestPreviousUsage(t *testing.T) {
	for mode, want := range map[string]bool{"api": true, "all": true, "worker": false} {
		var b bytes.Buffer
		printSettings(&b, mode)
		if got := strings.Contains(b.String(), "-previous-redis-url URI") && strings.Contains(b.String(), "-previous-queue-shards N"); got != want {
			t.Errorf("%s usage lists the previous-datastore settings: %v, want %v", mode, got, want)
		}
	}
	const pw = "pw-PREVIOUS-usage"
	var out, errOut bytes.Buffer
	env := map[string]string{"PREVIOUS_REDIS_URL": "redis://:" + pw + "@127.0.0.1:1"}
	_ = run(context.Background(), []string{"api", "-h"}, func(k string) string { return env[k] }, &out, &errOut)
	if strings.Contains(out.String()+errOut.String(), pw) {
		t.Errorf("usage shows the previous Redis password")
	}
	if !strings.Contains(out.String()+errOut.String(), "PREVIOUS_REDIS_URL") {
		t.Errorf("api -h does not mention PREVIOUS_REDIS_URL:\n%s", out.String())
	}
}
