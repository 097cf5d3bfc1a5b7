package testenv

import "syscall"

// childAttr puts a child in its own process group (a terminal's Ctrl-C
// reaches this process, which then kills it in order) and has the kernel kill it
// if this process dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
