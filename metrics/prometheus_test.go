package metrics

import (
	"os/exec"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestPrometheusFiles runs promtool over the Prometheus files compose mounts: the config
// (which also loads the rules), the alert rules, and their unit tests, which show every
// alert both firing and staying quiet.
func TestPrometheusFiles(t *testing.T) {
	promtool := testenv.LookPath(t, "promtool")
	tests := []struct {
		name string
		args []string
	}{
		{"config", []string{"check", "config", "prometheus/prometheus.yml"}},
		{"rules", []string{"check", "rules", alertsPath}},
		{"rule tests", []string{"test", "rules", "prometheus/alerts_test.yml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(promtool, tt.args...).CombinedOutput()
			if err != nil {
				t.Errorf("promtool %v: %v\n%s", tt.args, err, out)
			}
		})
	}
}
