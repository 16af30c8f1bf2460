// Command probe is a tiny static test tool for the local node's pods (image visionops.local/probe):
//
//	probe                       print "probe ok" and exit 0
//	probe exit CODE             exit with CODE
//	probe sleep SECONDS         sleep, then exit 0 (exits 0 at once on SIGTERM)
//	probe serve ADDR [TEXT]     HTTP server answering every request with TEXT (default: the hostname)
//	probe get URL [TRIES]       GET URL (retried once a second, TRIES times, default 30); print the body;
//	                            exit 0 on HTTP 200, 1 otherwise
//	probe resolve NAME          print NAME's addresses (the pod's /etc/resolv.conf, search domains included)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Println("probe ok")
		return 0
	}
	switch cmd, rest := args[0], args[1:]; {
	case cmd == "exit" && len(rest) == 1:
		code, err := strconv.Atoi(rest[0])
		if err != nil {
			return fail("exit: %q is not an integer", rest[0])
		}
		return code
	case cmd == "sleep" && len(rest) == 1:
		seconds, err := strconv.ParseFloat(rest[0], 64)
		if err != nil {
			return fail("sleep: %q is not a number of seconds", rest[0])
		}
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		select {
		case <-time.After(time.Duration(seconds * float64(time.Second))):
		case <-stop:
		}
		return 0
	case cmd == "serve" && (len(rest) == 1 || len(rest) == 2):
		return serve(rest[0], rest[1:])
	case cmd == "get" && (len(rest) == 1 || len(rest) == 2):
		tries := 30
		if len(rest) == 2 {
			n, err := strconv.Atoi(rest[1])
			if err != nil || n < 1 {
				return fail("get: TRIES must be a positive integer, got %q", rest[1])
			}
			tries = n
		}
		return get(rest[0], tries)
	case cmd == "resolve" && len(rest) == 1:
		addrs, err := net.DefaultResolver.LookupHost(context.Background(), rest[0])
		if err != nil {
			return fail("resolve %s: %v", rest[0], err)
		}
		fmt.Println(strings.Join(addrs, "\n"))
		return 0
	}
	return fail("usage: probe [exit CODE | sleep SECONDS | serve ADDR [TEXT] | get URL [TRIES] | resolve NAME], got %q",
		strings.Join(args, " "))
}

func serve(addr string, text []string) int {
	body := ""
	if len(text) == 1 {
		body = text[0]
	} else if host, err := os.Hostname(); err == nil {
		body = host
	}
	server := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, body) })}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		<-stop
		_ = server.Close()
	}()
	fmt.Printf("serving on %s\n", addr)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		return fail("serve %s: %v", addr, err)
	}
	return 0
}

func get(url string, tries int) int {
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for i := 0; i < tries; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			fmt.Print(string(body))
			return 0
		}
		last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
	}
	return fail("get %s: no HTTP 200 after %d tries; last: %s", url, tries, last)
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", args...)
	return 1
}
