package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseClusterURL(t *testing.T) {
	tests := []struct {
		url        string
		addrs      []string
		user, pass string
		tls        bool
	}{
		{"redis-cluster://127.0.0.1:7000", []string{"127.0.0.1:7000"}, "", "", false},
		{"redis-cluster://:s3cr%40t@h1:1,h2:2,[::1]:3/", []string{"h1:1", "h2:2", "[::1]:3"}, "", "s3cr@t", false},
		{"rediss-cluster://app:pw@h1:6379,h2:6379", []string{"h1:6379", "h2:6379"}, "app", "pw", true},
	}
	for _, tt := range tests {
		o, err := parseClusterURL(tt.url)
		if err != nil {
			t.Errorf("parseClusterURL(%q): %v", tt.url, err)
			continue
		}
		if !slices.Equal(o.Addrs, tt.addrs) || o.Username != tt.user || o.Password != tt.pass || (o.TLSConfig != nil) != tt.tls {
			t.Errorf("parseClusterURL(%q) = %v user %q pass %q tls %v", tt.url, o.Addrs, o.Username, o.Password, o.TLSConfig != nil)
		}
	}
	for _, bad := range []string{
		"redis-cluster://", "redis-cluster://:topsecret@", "redis-cluster://:topsecret@h1", "redis-cluster://h1:1,,h2:2",
		"redis-cluster://h1:1/0", "redis-cluster://h1:1?x=y", "redis-cluster://:topsecret@h1:1,h2",
	} {
		_, err := parseClusterURL(bad)
		if !errors.Is(err, errClusterURL) {
			t.Errorf("parseClusterURL(%q) = %v, want errClusterURL", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "topsecret") {
			t.Errorf("error for %q shows the password: %v", bad, err)
		}
	}
}

func TestClusterSettingsValidated(t *testing.T) {
	for _, env := range []map[string]string{
		{"QUEUE_SHARDS": "0"}, {"QUEUE_SHARDS": "5000"}, {"HOST_CONCURRENCY_SCOPE": "global"}, {"WORKER_SHARD_GROUPS": "-1"},
	} {
		_, _, err := loadConfig("worker", nil, func(k string) string { return env[k] })
		if err == nil {
			t.Errorf("loadConfig with %v: no error", env)
		}
	}
	cfg, _, err := loadConfig("worker", nil, func(string) string { return "" })
	if err != nil || cfg.QueueShards != 1 || cfg.HostScope != "fleet" || cfg.ShardGroups != 0 {
		t.Errorf("defaults: shards %d scope %q groups %d, %v; want 1, fleet, 0", cfg.QueueShards, cfg.HostScope, cfg.ShardGroups, err)
	}
}
