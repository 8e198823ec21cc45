// flatfs-harness opens a flatfs tree with go-ds-flatfs (github.com/ipfs/go-ds-flatfs, the
// datastore Kubo keeps its blocks in) and reads or writes it, so that tests can check a
// dscluster node's blocks/ directory against the real implementation.
//
//	flatfs-harness dump ROOT            every key, as JSON: {"shard", "disk_usage", "keys": [{"key", "size", "value"}]}
//	flatfs-harness put ROOT KEY FILE    store FILE's bytes at KEY (e.g. /CIQ...)
//	flatfs-harness delete ROOT KEY      delete KEY
//
// ROOT must already be a flatfs tree (it has a SHARDING file): the harness opens it with
// flatfs.Open, never creates one. "value" is base64 (encoding/json's []byte). Every key
// a query returns is read again with Get, GetSize and Has, and any disagreement is an
// error. Exit status 0 on success, 1 with a message on stderr otherwise.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	flatfs "github.com/ipfs/go-ds-flatfs"
)

type entry struct {
	Key   string `json:"key"`
	Size  int    `json:"size"`
	Value []byte `json:"value"`
}

type dump struct {
	Shard     string  `json:"shard"`
	DiskUsage uint64  `json:"disk_usage"`
	Keys      []entry `json:"keys"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "flatfs-harness:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: flatfs-harness dump ROOT | put ROOT KEY FILE | delete ROOT KEY")
	}
	cmd, root := args[0], args[1]
	if _, err := flatfs.ReadShardFunc(root); err != nil {
		return fmt.Errorf("%s: %w", root, err)
	}
	fs, err := flatfs.Open(root, true)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	ctx := context.Background()
	switch {
	case cmd == "dump" && len(args) == 2:
		err = dumpAll(ctx, fs)
	case cmd == "put" && len(args) == 4:
		err = put(ctx, fs, ds.RawKey(args[2]), args[3])
	case cmd == "delete" && len(args) == 3:
		err = del(ctx, fs, ds.RawKey(args[2]))
	default:
		err = fmt.Errorf("bad arguments %q", args)
	}
	if cerr := fs.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

func dumpAll(ctx context.Context, fs *flatfs.Datastore) error {
	res, err := fs.Query(ctx, dsq.Query{})
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	all, err := res.Rest()
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	out := dump{Shard: fs.ShardStr(), Keys: []entry{}}
	for _, e := range all {
		k := ds.RawKey(e.Key)
		v, err := fs.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("get %s (listed by the query): %w", k, err)
		}
		if !bytes.Equal(v, e.Value) {
			return fmt.Errorf("get %s: %d bytes differ from the query's %d", k, len(v), len(e.Value))
		}
		size, err := fs.GetSize(ctx, k)
		if err != nil || size != len(v) {
			return fmt.Errorf("getsize %s: %d, %v (value has %d bytes)", k, size, err, len(v))
		}
		if has, err := fs.Has(ctx, k); err != nil || !has {
			return fmt.Errorf("has %s: %v, %v", k, has, err)
		}
		out.Keys = append(out.Keys, entry{Key: e.Key, Size: size, Value: v})
	}
	sort.Slice(out.Keys, func(i, j int) bool { return out.Keys[i].Key < out.Keys[j].Key })
	if out.DiskUsage, err = fs.DiskUsage(ctx); err != nil {
		return fmt.Errorf("disk usage: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func put(ctx context.Context, fs *flatfs.Datastore, k ds.Key, file string) error {
	v, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := fs.Put(ctx, k, v); err != nil {
		return fmt.Errorf("put %s: %w", k, err)
	}
	got, err := fs.Get(ctx, k)
	if err != nil || !bytes.Equal(got, v) {
		return fmt.Errorf("get %s after put: %d bytes, %v", k, len(got), err)
	}
	return nil
}

func del(ctx context.Context, fs *flatfs.Datastore, k ds.Key) error {
	if has, err := fs.Has(ctx, k); err != nil || !has {
		return fmt.Errorf("delete %s: not there before (has %v, %v)", k, has, err)
	}
	if err := fs.Delete(ctx, k); err != nil {
		return fmt.Errorf("delete %s: %w", k, err)
	}
	if has, err := fs.Has(ctx, k); err != nil || has {
		return fmt.Errorf("has %s after delete: %v, %v", k, has, err)
	}
	return nil
}
