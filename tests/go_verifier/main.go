// Command go_verifier audits a C2SP tlog-tiles export with Go's reference implementation,
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, which Chronicle did not write.
//
// Usage: go_verifier VERIFIER_KEY DIR [OLD_CHECKPOINT...]
//
// It opens DIR/checkpoint with the verifier key, recomputes the root from the tiles, checks
// every entry of every entry bundle against its leaf, proves inclusion of every 97th entry,
// and proves each OLD_CHECKPOINT (opened with the same key) consistent with DIR's tree. It
// prints "ok <size> <root>" and exits 0, or prints the failure and exits 1.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type tree struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies a signed checkpoint and parses its text (C2SP tlog-checkpoint).
func openCheckpoint(path string, verifiers note.Verifiers) (tree, error) {
	msg, err := os.ReadFile(path)
	if err != nil {
		return tree{}, err
	}
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return tree{}, fmt.Errorf("%s: %w", path, err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return tree{}, fmt.Errorf("%s: fewer than three lines", path)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return tree{}, fmt.Errorf("%s: bad tree size %q", path, lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return tree{}, fmt.Errorf("%s: bad root %q", path, lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return tree{lines[0], size, root}, nil
}

// tiles serves tiles from an export directory. Go's tlog names a tile tile/H/L/N; C2SP
// tlog-tiles drops the height.
type tiles struct{ dir string }

func (t tiles) Height() int { return 8 }

func c2spPath(tile tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(tile.Path(), "tile/8/")
}

func (t tiles) ReadTiles(list []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(list))
	for i, tile := range list {
		data, err := os.ReadFile(filepath.Join(t.dir, c2spPath(tile)))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t tiles) SaveTiles([]tlog.Tile, [][]byte) {}

// bundlePath is the entry bundle of level-0 tile n of width w: tile/entries/N[.p/W].
func bundlePath(n, w int64) string {
	tile := tlog.Tile{H: 8, L: 0, N: n, W: int(w)}
	return "tile/entries/" + strings.TrimPrefix(tile.Path(), "tile/8/0/")
}

func audit(key, dir string, olds []string) error {
	verifier, err := note.NewVerifier(key)
	if err != nil {
		return err
	}
	verifiers := note.VerifierList(verifier)
	cur, err := openCheckpoint(filepath.Join(dir, "checkpoint"), verifiers)
	if err != nil {
		return err
	}
	reader := tlog.TileHashReader(tlog.Tree{N: cur.size, Hash: cur.root}, tiles{dir})
	root, err := tlog.TreeHash(cur.size, reader)
	if err != nil {
		return fmt.Errorf("tree hash: %w", err)
	}
	if cur.size == 0 {
		// tlog.TreeHash gives the zero hash for the empty tree; RFC 6962 (and C2SP) give
		// the SHA-256 of no bytes.
		root = sha256.Sum256(nil)
	}
	if root != cur.root {
		return fmt.Errorf("tiles hash to %v, the checkpoint says %v", root, cur.root)
	}
	for start := int64(0); start < cur.size; start += 256 {
		width := cur.size - start
		if width > 256 {
			width = 256
		}
		data, err := os.ReadFile(filepath.Join(dir, bundlePath(start/256, width)))
		if err != nil {
			return err
		}
		indexes := make([]int64, width)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		leaves, err := reader.ReadHashes(indexes)
		if err != nil {
			return fmt.Errorf("leaves from %d: %w", start, err)
		}
		for i := int64(0); i < width; i++ {
			if len(data) < 2 {
				return fmt.Errorf("entry %d: bundle too short", start+i)
			}
			n := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+n {
				return fmt.Errorf("entry %d: bundle too short", start+i)
			}
			entry := data[2 : 2+n]
			data = data[2+n:]
			if tlog.RecordHash(entry) != leaves[i] {
				return fmt.Errorf("entry %d does not hash to its leaf", start+i)
			}
			if (start+i)%97 == 0 {
				proof, err := tlog.ProveRecord(cur.size, start+i, reader)
				if err != nil {
					return fmt.Errorf("prove entry %d: %w", start+i, err)
				}
				if err := tlog.CheckRecord(proof, cur.size, cur.root, start+i, tlog.RecordHash(entry)); err != nil {
					return fmt.Errorf("entry %d: %w", start+i, err)
				}
			}
		}
		if len(data) != 0 {
			return fmt.Errorf("bundle from %d: %d bytes after its entries", start, len(data))
		}
	}
	for _, path := range olds {
		old, err := openCheckpoint(path, verifiers)
		if err != nil {
			return err
		}
		if old.origin != cur.origin {
			return fmt.Errorf("%s: origin %q, not %q", path, old.origin, cur.origin)
		}
		if old.size == 0 || old.size == cur.size {
			if old.size == cur.size && old.root != cur.root {
				return errors.New(path + ": same size, other root")
			}
			continue
		}
		proof, err := tlog.ProveTree(cur.size, old.size, reader)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := tlog.CheckTree(proof, cur.size, cur.root, old.size, old.root); err != nil {
			return fmt.Errorf("%s: not a prefix: %w", path, err)
		}
	}
	fmt.Printf("ok %d %s\n", cur.size, base64.StdEncoding.EncodeToString(cur.root[:]))
	return nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: go_verifier VERIFIER_KEY DIR [OLD_CHECKPOINT...]")
		os.Exit(2)
	}
	if err := audit(os.Args[1], os.Args[2], os.Args[3:]); err != nil {
		fmt.Println("fail:", err)
		os.Exit(1)
	}
}
