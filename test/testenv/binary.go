package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildPrefix starts the name of the temp dir BuildBinary builds into; the pid of the
// building process follows, so a later build can remove the dirs of processes that died
// without RemoveBinary.
const buildPrefix = "dispatcher-build-"

var build struct {
	mu   sync.Mutex
	dir  string // "" until built
	path string
	err  error // a failed build is not retried within one process
}

// BuildBinary builds ./cmd/dispatcher once per process, into a temp dir of its own, and
// returns the binary's path; RemoveBinary removes it. DISPATCHER_BIN, when set, is used
// instead (a prebuilt binary, never removed). A build cancelled through ctx is tried again
// on the next call; one that failed otherwise is not.
func BuildBinary(ctx context.Context) (string, error) {
	if p := os.Getenv("DISPATCHER_BIN"); p != "" {
		return p, nil
	}
	build.mu.Lock()
	defer build.mu.Unlock()
	if build.path != "" || build.err != nil {
		return build.path, build.err
	}
	removeOrphanBuilds()
	root, err := FindModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", buildPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "dispatcher")
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "go", "build", "-o", path, "./cmd/dispatcher")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		err = fmt.Errorf("go build ./cmd/dispatcher: %v\n%s", err, out)
		if ctx.Err() == nil {
			build.err = err
		}
		return "", err
	}
	build.dir, build.path = dir, path
	return path, nil
}

// RemoveBinary removes what BuildBinary built; the next BuildBinary builds again.
// Processes started from the binary keep running.
func RemoveBinary() {
	build.mu.Lock()
	defer build.mu.Unlock()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	build.dir, build.path, build.err = "", "", nil
}

// removeOrphanBuilds removes the build dirs of processes that no longer exist.
func removeOrphanBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), buildPrefix+"*"))
	for _, dir := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), buildPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// Binary is BuildBinary failing tb on error. The build stays until RemoveBinary, which
// Main calls once the package's tests are done.
func Binary(tb testing.TB) string {
	tb.Helper()
	path, err := BuildBinary(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// Main runs m's tests and then removes the binary Binary built. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// (testing exits with m.Run's code once TestMain returns.) A test binary that dies
// before that leaves the build behind until the next BuildBinary of any package.
func Main(m *testing.M) {
	defer RemoveBinary()
	m.Run()
}
