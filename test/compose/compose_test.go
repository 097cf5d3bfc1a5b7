// Package compose checks docker-compose.yml, the Dockerfile and .dockerignore without a
// Docker engine: the compose file is loaded, interpolated and validated with compose-go,
// the loader `docker compose` itself uses, and the result is checked against what the
// stack needs.
package compose

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// root is the repository root, relative to this package.
const root = "../.."

// load loads docker-compose.yml with only env for interpolation: neither the caller's
// environment nor a local .env can change the result.
func load(ctx context.Context, env ...string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithName("webhook-dispatcher"),
		cli.WithEnv(env),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(ctx)
}

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	p, err := load(t.Context(), "API_TOKEN=test-token")
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServices(t *testing.T) {
	p := loadProject(t)
	want := []string{"api", "grafana", "prometheus", "redis", "worker"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Errorf("services = %v, want %v", got, want)
	}
	for _, name := range p.ServiceNames() {
		s := service(t, p, name)
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 {
			t.Errorf("%s: no health check", name)
		}
		if s.Restart == "" {
			t.Errorf("%s: no restart policy", name)
		}
	}
}

func TestDispatcherServices(t *testing.T) {
	p := loadProject(t)
	tests := []struct {
		name     string
		command  []string
		replicas int
		health   []string
	}{
		{"api", []string{"api"}, 1, []string{"CMD", "/dispatcher", "healthcheck", "http://127.0.0.1:8080/healthz"}},
		{"worker", []string{"worker"}, 2, []string{"CMD", "/dispatcher", "healthcheck", "http://127.0.0.1:9090/healthz"}},
	}
	for _, tt := range tests {
		s := service(t, p, tt.name)
		if s.Build == nil || s.Build.Context != mustAbs(t, root) || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s: build = %+v, want the repo's Dockerfile", tt.name, s.Build)
		}
		if !slices.Equal(s.Command, tt.command) {
			t.Errorf("%s: command = %v, want %v", tt.name, s.Command, tt.command)
		}
		if got := s.GetScale(); got != tt.replicas {
			t.Errorf("%s: %d replicas, want %d", tt.name, got, tt.replicas)
		}
		if s.HealthCheck != nil && !slices.Equal(s.HealthCheck.Test, tt.health) {
			t.Errorf("%s: healthcheck = %v, want %v (the image has no shell)", tt.name, s.HealthCheck.Test, tt.health)
		}
		if v := s.Environment["REDIS_URL"]; v == nil || *v != "redis://redis:6379/0" {
			t.Errorf("%s: REDIS_URL = %v", tt.name, v)
		}
		if d, ok := s.DependsOn["redis"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: must wait for a healthy redis, depends_on = %+v", tt.name, s.DependsOn)
		}
	}
	if v := service(t, p, "api").Environment["API_TOKEN"]; v == nil || *v != "test-token" {
		t.Errorf("api: API_TOKEN = %v, want the interpolated test-token", v)
	}
	// Docker must not SIGKILL a worker while its deliveries still have SHUTDOWN_TIMEOUT
	// (default DELIVERY_TIMEOUT+5s = 10s) to finish; 30s leaves room for raising it.
	if g := service(t, p, "worker").StopGracePeriod; g == nil || *g < types.Duration(30*time.Second) {
		t.Errorf("worker: stop_grace_period = %v, want 30s or more", g)
	}
}

func TestRedis(t *testing.T) {
	s := service(t, loadProject(t), "redis")
	cmd := strings.Join(s.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %q", cmd, want)
		}
	}
	if !hasVolume(s, types.VolumeTypeVolume, "redis-data", "/data") {
		t.Errorf("redis: no named volume on /data: %+v", s.Volumes)
	}
	if !slices.Contains(s.HealthCheck.Test, "redis-cli") {
		t.Errorf("redis healthcheck = %v, want redis-cli ping", s.HealthCheck.Test)
	}
}

func TestMounts(t *testing.T) {
	p := loadProject(t)
	tests := []struct {
		service, source, target string
	}{
		{"prometheus", "metrics/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml"},
		{"prometheus", "metrics/prometheus/alerts.yml", "/etc/prometheus/alerts.yml"},
		{"grafana", "metrics/grafana/provisioning", "/etc/grafana/provisioning"},
		{"grafana", "metrics/grafana/dispatcher.json", "/etc/grafana/dashboards/dispatcher.json"},
	}
	for _, tt := range tests {
		src := mustAbs(t, filepath.Join(root, tt.source))
		if !hasVolume(service(t, p, tt.service), types.VolumeTypeBind, src, tt.target) {
			t.Errorf("%s: %s is not mounted at %s", tt.service, tt.source, tt.target)
		}
	}
	// Every file the stack mounts from the repo must exist, or Docker creates an empty
	// directory in its place and the service starts without its config.
	for _, name := range p.ServiceNames() {
		for _, v := range service(t, p, name).Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", name, v.Source, err)
			}
			if !v.ReadOnly {
				t.Errorf("%s mounts %s read-write; config from the repo should be read-only", name, v.Source)
			}
		}
	}
	// The paths inside the containers must agree with the files that reference them.
	for file, want := range map[string]string{
		"metrics/prometheus/prometheus.yml":                       "- alerts.yml", // beside the config
		"metrics/grafana/provisioning/dashboards/dashboards.yml":  "path: /etc/grafana/dashboards",
		"metrics/grafana/provisioning/datasources/prometheus.yml": "url: http://prometheus:9090",
	} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s should contain %q (err %v)", file, want, err)
		}
	}
	for _, name := range []string{"redis-data", "prometheus-data", "grafana-data"} {
		if _, ok := p.Volumes[name]; !ok {
			t.Errorf("named volume %s not declared", name)
		}
	}
}

func TestPorts(t *testing.T) {
	p := loadProject(t)
	type port struct {
		hostIP    string
		published string
		target    uint32
	}
	want := map[string][]port{
		"api":        {{"127.0.0.1", "8080", 8080}}, // put a TLS proxy in front to expose it
		"prometheus": {{"127.0.0.1", "9091", 9090}}, // no auth: loopback only
		"grafana":    {{"127.0.0.1", "3000", 3000}}, // anonymous viewers: loopback only
		"redis":      nil,                           // internal only
		"worker":     nil,                           // replicas would clash; scraped over the network
	}
	for name, ports := range want {
		var got []port
		for _, pc := range service(t, p, name).Ports {
			got = append(got, port{pc.HostIP, pc.Published, pc.Target})
		}
		if !slices.Equal(got, ports) {
			t.Errorf("%s: ports = %+v, want %+v", name, got, ports)
		}
	}
}

// TestMissingAPIToken: `docker compose up` without API_TOKEN must stop with a message
// saying what to set, not start an API that accepts an empty token.
func TestMissingAPIToken(t *testing.T) {
	for _, env := range [][]string{nil, {"API_TOKEN="}} {
		_, err := load(t.Context(), env...)
		if err == nil || !strings.Contains(err.Error(), "set API_TOKEN") {
			t.Errorf("load with env %q: err = %v, want one telling to set API_TOKEN", env, err)
		} else {
			t.Logf("env %q: %v", env, err)
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"ARG VERSION",
		"ARG COMMIT",
		"CGO_ENABLED=0 go build -trimpath",
		`-ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}"`,
		"-o /dispatcher ./cmd/dispatcher",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"COPY --from=build /dispatcher /dispatcher",
		"USER 65532:65532",
		`ENTRYPOINT ["/dispatcher"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The last FROM is the image that ships.
	froms := []string{}
	for line := range strings.Lines(df) {
		if strings.HasPrefix(line, "FROM ") {
			froms = append(froms, strings.TrimSpace(line))
		}
	}
	if len(froms) != 2 || !strings.Contains(froms[1], "distroless") {
		t.Errorf("stages = %v, want a build stage and a distroless final stage", froms)
	}
}

// TestDockerignore: the build needs go.mod, go.sum and the Go sources; .git and local
// secrets must stay out of the context.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	for _, want := range []string{".git", ".env"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	for _, p := range patterns {
		for _, needed := range []string{"go.mod", "go.sum", "cmd/dispatcher/main.go", "metrics/metrics.go"} {
			if ok, _ := filepath.Match(strings.TrimPrefix(p, "/"), needed); ok || strings.HasPrefix(needed, strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")+"/") {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, needed)
			}
		}
	}
}

func hasVolume(s types.ServiceConfig, typ, source, target string) bool {
	return slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == typ && v.Source == source && v.Target == target
	})
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
