package main

import (
	"strings"
	"testing"
	"time"
)

// TestDedupeSettings: the memory-budget settings' defaults, and a
// DEDUPE_WINDOW shorter than RETENTION refused.
func TestDedupeSettings(t *testing.T) {
	env := map[string]string{"API_TOKEN": "t"}
	cfg, _, err := loadConfig("all", nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Retention != time.Hour || cfg.DedupeWindow != 7*24*time.Hour || cfg.MarkerBuckets != 1024 || cfg.DeliveredLogTTL != 24*time.Hour {
		t.Errorf("defaults: RETENTION %s DEDUPE_WINDOW %s DELIVERED_MARKER_BUCKETS %d ATTEMPT_LOG_RETENTION %s",
			cfg.Retention, cfg.DedupeWindow, cfg.MarkerBuckets, cfg.DeliveredLogTTL)
	}
	env["RETENTION"], env["DEDUPE_WINDOW"] = "48h", "24h"
	if _, _, err := loadConfig("all", nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "DEDUPE_WINDOW") {
		t.Errorf("DEDUPE_WINDOW below RETENTION: %v, want an error naming DEDUPE_WINDOW", err)
	}
	env["DEDUPE_WINDOW"], env["DELIVERED_MARKER_BUCKETS"] = "72h", "0"
	if _, _, err := loadConfig("all", nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "DELIVERED_MARKER_BUCKETS") {
		t.Errorf("DELIVERED_MARKER_BUCKETS 0: %v, want an error", err)
	}
}
