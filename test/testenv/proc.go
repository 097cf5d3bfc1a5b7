package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killWait bounds how long Kill waits for a killed process to be reaped.
const killWait = 10 * time.Second

// Proc is a child process whose stdout and stderr go to a log file.
type Proc struct {
	Name    string // the binary's base name, for messages
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result, set before done closes
}

// StartProc starts cmd with its stdout and stderr appended to logPath (created if
// missing, so a restarted server keeps one log). The child gets its own process group, and
// on Linux the kernel kills it if this process dies without cleaning up.
func StartProc(cmd *exec.Cmd, logPath string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own copy
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	p := &Proc{Name: filepath.Base(cmd.Path), LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the process, e.g. SIGSTOP and SIGCONT to freeze it while its
// sockets stay open.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL (a crash: no shutdown work) and waits up to 10 s for the exit. A
// nil or exited Proc is left alone.
func (p *Proc) Kill() {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killWait):
	}
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its error.
func (p *Proc) Wait(timeout time.Duration) (exited bool, err error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true, p.err
	case <-t.C:
		return false, nil
	}
}

// Logs returns everything the process printed so far.
func (p *Proc) Logs() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n bytes the process printed.
func (p *Proc) Tail(n int64) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, st.Size()-n)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if off > 0 {
		return "…" + string(b)
	}
	return string(b)
}

// Failure wraps err with the process's state and the tail of its output.
func (p *Proc) Failure(err error) error {
	state := "running"
	if p.Exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Errorf("%s (%s): %w\n--- %s output (tail) ---\n%s", p.Name, state, err, p.Name, p.Tail(8000))
}

// RSS returns the resident set size of process pid in bytes (VmRSS in /proc/PID/status).
// It fails on systems without /proc.
func RSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// PeakRSS returns the peak resident set size of process pid in bytes (VmHWM in
// /proc/PID/status). It fails on systems without /proc.
func PeakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// statusBytes reads a "Field:  12345 kB" line of /proc/PID/status.
func statusBytes(pid int, field string) (int64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest) // "12345 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", field, sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", field, fields[0], err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no " + field + " in " + path)
}
