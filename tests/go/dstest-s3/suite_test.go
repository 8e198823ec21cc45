package dstests3

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dstest "github.com/ipfs/go-datastore/test"
)

// knownGaps are the subtests skipped because the gateway lacks something, each with
// the gap it shows (doc/storage.md, "Go interop harnesses", lists them too). Empty:
// every subtest runs.
var knownGaps = map[string]string{}

func env(t *testing.T, name string) string {
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set (tests/interop/test_go_datastore.py sets it)", name)
	}
	return v
}

func open(t *testing.T) *Datastore {
	conf := Config{
		Endpoint:  env(t, "DSTEST_S3_ENDPOINT"),
		Region:    env(t, "DSTEST_S3_REGION"),
		Bucket:    env(t, "DSTEST_S3_BUCKET"),
		AccessKey: env(t, "DSTEST_S3_ACCESS_KEY"),
		SecretKey: env(t, "DSTEST_S3_SECRET_KEY"),
	}
	if v := os.Getenv("DSTEST_S3_LIST_MAX"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		conf.ListMax = n
	}
	if v := os.Getenv("DSTEST_ELEM_COUNT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 20 {
			t.Fatalf("DSTEST_ELEM_COUNT=%q: go-datastore's suite needs at least 20", v)
		}
		dstest.ElemCount = n
	}
	d, err := New(conf)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// shortName is the subtest's function name without its package path, so that
// -test.run patterns can name it (the full name contains "/").
func shortName(f any) string {
	name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
	return name[strings.LastIndex(name, ".")+1:]
}

func mustBeEmpty(t *testing.T, d ds.Datastore, when string) {
	res, err := d.Query(context.Background(), dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	left, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("bucket not empty %s: %d keys, e.g. %s", when, len(left), left[0].Key)
	}
}

// clearAll deletes every key; it runs as a cleanup, when t.Context() is already canceled.
func clearAll(t *testing.T, d ds.Datastore) {
	ctx := context.Background()
	res, err := d.Query(ctx, dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := d.Delete(ctx, ds.RawKey(e.Key)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSuite is dstest.SubtestAll — every basic subtest (SubtestCombinations included:
// it is left out only under the race detector), then every batching subtest, each
// followed by emptying the bucket — with short subtest names and knownGaps skipped.
func TestSuite(t *testing.T) {
	d := open(t)
	mustBeEmpty(t, d, "before the suite")
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			if gap, ok := knownGaps[name]; ok {
				t.Skip(gap)
			}
			// emptied even after a failure, so that the next subtest starts clean
			t.Cleanup(func() { clearAll(t, d) })
			f(t)
		})
	}
	for _, f := range dstest.BasicSubtests {
		run(shortName(f), func(t *testing.T) { f(t, d) })
	}
	for _, f := range dstest.BatchSubtests {
		run(shortName(f), func(t *testing.T) { f(t, d) })
	}
}

// TestPaging lists 1100 keys in pages of 1000 (S3's largest) and of 97, checks they
// came back whole and in order, and deletes them with DeleteObjects (2 requests: 1000 +
// 100 keys).
func TestPaging(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	b, _ := d.Batch(ctx)
	const n = 1100
	want := make([]string, 0, n)
	for i := range n {
		k := ds.NewKey("/paging/" + strconv.Itoa(100000+i))
		want = append(want, k.String())
		if err := b.Put(ctx, k, []byte(k.String())); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, page := range []int{1000, 97} {
		d.conf.ListMax = page
		res, err := d.Query(ctx, dsq.Query{Prefix: "/paging", KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		got, err := res.Rest()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("pages of %d: listed %d keys, want %d", page, len(got), n)
		}
		for i, e := range got {
			if e.Key != want[i] || e.Size != len(want[i]) {
				t.Fatalf("pages of %d: key %d: %q size %d, want %q size %d", page, i, e.Key,
					e.Size, want[i], len(want[i]))
			}
		}
	}
	for _, k := range want {
		if err := b.Delete(ctx, ds.RawKey(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mustBeEmpty(t, d, "after the batch delete")
}

// TestNames prints the subtests TestSuite runs, one "subtest NAME" line each, so that
// the pytest wrapper can check it runs every one of them.
func TestNames(t *testing.T) {
	for _, f := range dstest.BasicSubtests {
		fmt.Println("subtest", shortName(f))
	}
	for _, f := range dstest.BatchSubtests {
		fmt.Println("subtest", shortName(f))
	}
}
