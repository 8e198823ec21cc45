// ferretdb-harness runs FerretDB v1 (github.com/FerretDB/FerretDB, a MongoDB wire-protocol
// server) embedded, with its SQLite backend, so that tests can run the mongo store against
// a real MongoDB-protocol server without a mongod.
//
//	ferretdb-harness DIR    serve the databases kept in DIR (one SQLite file each)
//
// It listens on 127.0.0.1 on a port the kernel picks (no race for a free port) and, once
// listening, prints its MongoDB URI as one line on stdout. It runs until SIGINT or
// SIGTERM. Log messages of level warning and above go to stderr. Exit status 1 with a
// message on stderr if it cannot start.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if len(os.Args) != 2 {
		fail(fmt.Errorf("usage: %s DIR", os.Args[0]))
	}
	dir, err := filepath.Abs(os.Args[1])
	if err != nil {
		fail(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:   logger,
		Handler:  "sqlite",
		// the SQLite backend wants a directory URI ending in a slash
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	// MongoDBURI waits until the listener is bound
	fmt.Println(f.MongoDBURI())
	<-done
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ferretdb-harness:", err)
	os.Exit(1)
}
