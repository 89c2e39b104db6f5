// pause is PID 1 of every Kubernetes pod sandbox on labstack's nodes (image
// labstack/pause, the containerd CRI plugin's sandbox_image): it holds the
// pod's namespaces open and does nothing else. It blocks until SIGINT or
// SIGTERM, then exits 0; as PID 1 it is also the parent of every orphaned
// process of the pod, so it reaps them on SIGCHLD (they would stay zombies).
// `pause -v` prints its version. No dependencies: a static binary, the
// image's only file.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set with -ldflags "-X main.version=..." (versions.env PAUSE_VERSION).
var version = "unknown"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-v" {
		fmt.Println("pause", version)
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: pause [-v]")
		os.Exit(2)
	}
	// The kernel delivers no signal to PID 1 that has no handler: Notify
	// installs one for each of these.
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// A child may have exited before the handler was installed.
	reap()
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap waits for every child that has exited; one SIGCHLD may stand for
// several (signals of one kind do not queue), hence the loop.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		// pid 0: children remain, none has exited; ECHILD: no children.
		if err != nil || pid <= 0 {
			return
		}
	}
}
