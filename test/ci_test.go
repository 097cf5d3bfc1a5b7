package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestCIRunStopsOnlyWhatItInstalled runs .ci/run with fake apt-get,
// service, go, gofmt, git, node and npm on PATH: with everything already installed it
// stops no service (a developer's own Redis keeps running); with promtool
// missing it installs prometheus and stops that service only.
func TestCIRunStopsOnlyWhatItInstalled(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, c := range []struct {
		name        string
		present     []string
		wantService string
		wantInstall string
	}{
		{"all present", []string{"redis-server", "redis-sentinel", "promtool"}, "", ""},
		{"promtool missing", []string{"redis-server", "redis-sentinel"}, "prometheus stop\n", "prometheus"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			log := filepath.Join(dir, "calls")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			fake := func(name, body string) {
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!"+bash+"\n"+body+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range c.present {
				fake(p, "exit 0")
			}
			fake("service", `echo "$*" >> `+log+`.service`)
			fake("apt-get", `echo "$*" >> `+log+`.apt`)
			for _, p := range []string{"go", "gofmt", "git", "node", "npm"} {
				fake(p, "exit 0")
			}
			dirname, err := exec.LookPath("dirname")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(dirname, filepath.Join(bin, "dirname")); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bash, filepath.Join(testenv.ModuleRoot(t), ".ci", "run"))
			cmd.Env = []string{"PATH=" + bin, "HOME=" + dir}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf(".ci/run: %v\n%s", err, out)
			}
			service, _ := os.ReadFile(log + ".service")
			if string(service) != c.wantService {
				t.Errorf("services stopped: %q, want %q", service, c.wantService)
			}
			apt, _ := os.ReadFile(log + ".apt")
			if installed := strings.Contains(string(apt), "install"); installed != (c.wantInstall != "") || !strings.Contains(string(apt), c.wantInstall) {
				t.Errorf("apt-get calls: %q, want an install of %q", apt, c.wantInstall)
			}
		})
	}
}
