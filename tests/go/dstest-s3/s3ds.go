// Package dstests3 runs go-datastore's own test suite against the dscluster S3 gateway.
//
// go-ds-s3 (github.com/ipfs/go-ds-s3) is what Kubo uses, but the Go module proxy this
// project builds from refuses to serve it (403 "This module version is not available"
// for its version list and every version asked for). So this file is a small go-datastore
// over S3 of our own, written against the request shapes go-ds-s3 sends (doc/ipfs.md,
// "What go-ds-s3 does"): the same SDK (aws-sdk-go v1), path-style addressing to a
// configured endpoint, PutObject / GetObject / HeadObject / DeleteObject for single keys,
// ListObjectsV2 pages for queries, DeleteObjects of up to 1000 keys and parallel
// PutObjects for a batch commit. Where go-ds-s3 is lax (it refuses query filters and
// orders, and lists later pages with a delimiter), this one applies the query naively on
// the listing, so the whole suite can run.
package dstests3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

const deleteMax = 1000 // keys in one DeleteObjects (S3's limit, go-ds-s3's batch size)

// Config of a Datastore: the fields of go-ds-s3's Config that a gateway needs.
type Config struct {
	Endpoint      string // e.g. http://127.0.0.1:9000
	Region        string
	Bucket        string
	AccessKey     string
	SecretKey     string
	RootDirectory string
	ListMax       int // keys per ListObjectsV2 page; 0 means 1000
	Workers       int // parallel PutObjects in a batch commit; 0 means 16
}

// Datastore is a go-datastore Batching datastore over one S3 bucket.
type Datastore struct {
	conf Config
	S3   *s3.S3
}

var _ ds.Batching = (*Datastore)(nil)

// New connects (lazily) to the bucket of conf. Requests are not retried, so that a
// gateway error is a test failure rather than a retry the SDK hides.
func New(conf Config) (*Datastore, error) {
	if conf.ListMax == 0 {
		conf.ListMax = 1000
	}
	if conf.Workers == 0 {
		conf.Workers = 16
	}
	cfg := aws.NewConfig().
		WithEndpoint(conf.Endpoint).
		WithS3ForcePathStyle(true).
		WithRegion(conf.Region).
		WithCredentials(credentials.NewStaticCredentials(conf.AccessKey, conf.SecretKey, "")).
		WithMaxRetries(0).
		WithHTTPClient(&http.Client{Timeout: 60 * time.Second})
	sess, err := session.NewSession(cfg)
	if err != nil {
		return nil, fmt.Errorf("aws session: %w", err)
	}
	return &Datastore{conf: conf, S3: s3.New(sess)}, nil
}

// s3Key is the object key of a datastore key: go-ds-s3 passes path.Join(RootDirectory,
// key), "/foo", and aws-sdk-go's URI cleaning turns the request path /bucket//foo into
// /bucket/foo, so the object is "foo". We send "foo" ourselves, which also makes the keys
// in a DeleteObjects body match (go-ds-s3 puts "/foo" there, which no S3 cleans).
func (d *Datastore) s3Key(k string) string {
	return strings.TrimPrefix(path.Join(d.conf.RootDirectory, k), "/")
}

func (d *Datastore) Put(ctx context.Context, k ds.Key, value []byte) error {
	_, err := d.S3.PutObjectWithContext(ctx, &s3.PutObjectInput{
		Bucket: aws.String(d.conf.Bucket),
		Key:    aws.String(d.s3Key(k.String())),
		Body:   bytes.NewReader(value),
	})
	if err != nil {
		return fmt.Errorf("PutObject %s: %w", k, err)
	}
	return nil
}

func (d *Datastore) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	resp, err := d.S3.GetObjectWithContext(ctx, &s3.GetObjectInput{
		Bucket: aws.String(d.conf.Bucket),
		Key:    aws.String(d.s3Key(k.String())),
	})
	if err != nil {
		if code(err) == s3.ErrCodeNoSuchKey {
			return nil, ds.ErrNotFound
		}
		return nil, fmt.Errorf("GetObject %s: %w", k, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GetObject %s body: %w", k, err)
	}
	if resp.ContentLength != nil && int64(len(data)) != *resp.ContentLength {
		return nil, fmt.Errorf("GetObject %s: %d bytes, Content-Length %d", k, len(data),
			*resp.ContentLength)
	}
	return data, nil
}

func (d *Datastore) Has(ctx context.Context, k ds.Key) (bool, error) {
	_, err := d.GetSize(ctx, k)
	if errors.Is(err, ds.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (d *Datastore) GetSize(ctx context.Context, k ds.Key) (int, error) {
	resp, err := d.S3.HeadObjectWithContext(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(d.conf.Bucket),
		Key:    aws.String(d.s3Key(k.String())),
	})
	if err != nil {
		// a HEAD has no body, so the SDK names the 404 "NotFound" (go-ds-s3 tests that)
		if code(err) == "NotFound" {
			return -1, ds.ErrNotFound
		}
		return -1, fmt.Errorf("HeadObject %s: %w", k, err)
	}
	if resp.ContentLength == nil {
		return -1, fmt.Errorf("HeadObject %s: no Content-Length", k)
	}
	return int(*resp.ContentLength), nil
}

func (d *Datastore) Delete(ctx context.Context, k ds.Key) error {
	_, err := d.S3.DeleteObjectWithContext(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(d.conf.Bucket),
		Key:    aws.String(d.s3Key(k.String())),
	})
	if err != nil {
		return fmt.Errorf("DeleteObject %s: %w", k, err)
	}
	return nil
}

func (d *Datastore) Sync(context.Context, ds.Key) error { return nil }

func (d *Datastore) Close() error { return nil }

// Query lists the keys under the query's prefix page by page (ListObjectsV2 with
// continuation tokens, no delimiter), reads each value with a GetObject as go-ds-s3 does
// (unless KeysOnly), and applies prefix, filters, orders, offset and limit naively.
func (d *Datastore) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	prefix := ""
	if p := path.Clean("/" + q.Prefix); p != "/" {
		prefix = d.s3Key(p) + "/"
	} else if d.conf.RootDirectory != "" {
		prefix = d.s3Key("/") + "/"
	}
	var (
		page  []*s3.Object
		token *string
		done  bool
		index int
	)
	list := func() error {
		in := &s3.ListObjectsV2Input{
			Bucket:  aws.String(d.conf.Bucket),
			MaxKeys: aws.Int64(int64(d.conf.ListMax)),
		}
		if prefix != "" {
			in.Prefix = aws.String(prefix)
		}
		if token != nil {
			in.ContinuationToken = token
		}
		resp, err := d.S3.ListObjectsV2WithContext(ctx, in)
		if err != nil {
			return fmt.Errorf("ListObjectsV2 prefix %q: %w", prefix, err)
		}
		page, index = resp.Contents, 0
		truncated := resp.IsTruncated != nil && *resp.IsTruncated
		if truncated && (resp.NextContinuationToken == nil || *resp.NextContinuationToken == "") {
			return fmt.Errorf("ListObjectsV2 prefix %q: truncated without NextContinuationToken", prefix)
		}
		if len(page) > d.conf.ListMax {
			return fmt.Errorf("ListObjectsV2: %d keys for max-keys %d", len(page), d.conf.ListMax)
		}
		token, done = resp.NextContinuationToken, !truncated
		return nil
	}
	first, failed := true, false
	next := func() (dsq.Result, bool) {
		if failed {
			return dsq.Result{}, false
		}
		for first || (index >= len(page) && !done) {
			first = false
			if err := list(); err != nil {
				// an error is a result of its own (Rest stops at the first !ok)
				failed = true
				return dsq.Result{Error: err}, true
			}
		}
		if index >= len(page) {
			return dsq.Result{}, false
		}
		obj := page[index]
		index++
		name := strings.TrimPrefix(*obj.Key, strings.TrimPrefix(d.conf.RootDirectory+"/", "/"))
		e := dsq.Entry{Key: ds.NewKey(name).String(), Size: -1}
		if obj.Size != nil {
			e.Size = int(*obj.Size)
		}
		if !q.KeysOnly {
			v, err := d.Get(ctx, ds.RawKey(e.Key))
			if err != nil {
				failed = true
				return dsq.Result{Error: err}, true
			}
			e.Value = v
		}
		return dsq.Result{Entry: e}, true
	}
	return dsq.NaiveQueryApply(q, dsq.ResultsFromIterator(q, dsq.Iterator{Next: next})), nil
}

func (d *Datastore) Batch(context.Context) (ds.Batch, error) {
	return &batch{d: d, ops: map[ds.Key]op{}}, nil
}

type op struct {
	value  []byte
	delete bool
}

// batch keeps the last operation of every key until Commit, as go-ds-s3's does.
type batch struct {
	d   *Datastore
	ops map[ds.Key]op
}

func (b *batch) Put(_ context.Context, k ds.Key, v []byte) error {
	b.ops[k] = op{value: v}
	return nil
}

func (b *batch) Delete(_ context.Context, k ds.Key) error {
	b.ops[k] = op{delete: true}
	return nil
}

// Commit puts in parallel and deletes with DeleteObjects, 1000 keys at a time.
func (b *batch) Commit(ctx context.Context) error {
	var puts []ds.Key
	var dels []*s3.ObjectIdentifier
	for k, o := range b.ops {
		if o.delete {
			dels = append(dels, &s3.ObjectIdentifier{Key: aws.String(b.d.s3Key(k.String()))})
		} else {
			puts = append(puts, k)
		}
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	jobs := make(chan ds.Key)
	for range min(b.d.conf.Workers, len(puts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				if err := b.d.Put(ctx, k, b.ops[k].value); err != nil {
					fail(err)
				}
			}
		}()
	}
	for _, k := range puts {
		jobs <- k
	}
	close(jobs)
	for i := 0; i < len(dels); i += deleteMax {
		chunk := dels[i:min(i+deleteMax, len(dels))]
		resp, err := b.d.S3.DeleteObjectsWithContext(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(b.d.conf.Bucket),
			Delete: &s3.Delete{Objects: chunk},
		})
		if err != nil {
			fail(fmt.Errorf("DeleteObjects of %d keys: %w", len(chunk), err))
			continue
		}
		for _, e := range resp.Errors {
			fail(fmt.Errorf("DeleteObjects: key %s: %s %s", aws.StringValue(e.Key),
				aws.StringValue(e.Code), aws.StringValue(e.Message)))
		}
		if len(resp.Errors) == 0 && len(resp.Deleted) != len(chunk) {
			fail(fmt.Errorf("DeleteObjects of %d keys answered %d Deleted", len(chunk),
				len(resp.Deleted)))
		}
	}
	wg.Wait()
	b.ops = map[ds.Key]op{}
	return errors.Join(errs...)
}

func code(err error) string {
	var ae awserr.Error
	if errors.As(err, &ae) {
		return ae.Code()
	}
	return ""
}
