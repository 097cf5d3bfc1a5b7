package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

func checkURLCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return errUsage{errors.New("usage: dispatcher check-url URL")}
	}
	var o urlguard.Options
	var err error
	if o.Allow, err = urlguard.ParseAllowList(getenv("URLGUARD_ALLOW_CIDRS")); err != nil {
		return fmt.Errorf("config: URLGUARD_ALLOW_CIDRS: %w", err)
	}
	if o.Deny, err = urlguard.ParseDenyList(getenv("URLGUARD_DENY_CIDRS")); err != nil {
		return fmt.Errorf("config: URLGUARD_DENY_CIDRS: %w", err)
	}
	if o.AllowedPorts, err = urlguard.ParsePortList(getenv("URLGUARD_ALLOWED_PORTS")); err != nil {
		return fmt.Errorf("config: URLGUARD_ALLOWED_PORTS: %w", err)
	}
	if err := urlguard.NewWithOptions(o).CheckURL(args[0]); err != nil {
		fmt.Fprintf(stdout, "refused: %v\n", err)
		return errRefused
	}
	fmt.Fprintln(stdout, "ok: the URL may be registered (its addresses are checked again at every connection)")
	return nil
}

// enqueueCommand streams a JSON-lines file to POST /v1/deliveries/batch.
func enqueueCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	file := fs.String("file", "", "JSON-lines `file`, one {\"webhook\":…,\"generation\":{…}} per line; - for stdin")
	apiURL := fs.String("api", envOr(getenv, "API_URL", "http://127.0.0.1:8080"), "API base `URL` (env API_URL)")
	batchSize := fs.Int("batch", 100, "deliveries per `request` (at most 500)")
	if pos, err := parseFlags(fs, args, stdout); err != nil {
		return err
	} else if len(pos) > 0 {
		return errUsage{fmt.Errorf("enqueue takes no arguments, got %q", pos)}
	}
	token, err := secretFromEnv(getenv, "API_TOKEN")
	if err != nil {
		return errUsage{err}
	}
	if *file == "" || token == "" {
		return errUsage{errors.New("usage: API_TOKEN=… dispatcher enqueue --file deliveries.jsonl [--api URL]")}
	}
	if *batchSize < 1 || *batchSize > api.MaxBatchItems {
		return errUsage{fmt.Errorf("--batch must be 1..%d", api.MaxBatchItems)}
	}
	var in io.Reader = os.Stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}

	var sum struct{ accepted, duplicate, refused, invalid, failed, lines int }
	client := &http.Client{Timeout: 60 * time.Second}
	var lineNo []int // line number of each batch item, for messages
	send := func(batch []json.RawMessage, firstLine int) error {
		body, err := json.Marshal(map[string]any{"deliveries": batch})
		if err != nil {
			return fmt.Errorf("lines %d–%d: %w", firstLine, lineNo[len(lineNo)-1], err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*apiURL, "/")+"/v1/deliveries/batch", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("lines %d–%d: %w", firstLine, lineNo[len(lineNo)-1], err)
		}
		defer resp.Body.Close()
		var out struct {
			Results []api.BatchResult `json:"results"`
			Error   string            `json:"error"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("lines %d–%d: API answered %s %s", firstLine, lineNo[len(lineNo)-1], resp.Status, out.Error)
		}
		if len(out.Results) != len(batch) {
			return fmt.Errorf("lines %d–%d: API answered %d results for %d items", firstLine, lineNo[len(lineNo)-1], len(out.Results), len(batch))
		}
		for i, r := range out.Results {
			switch r.Status {
			case http.StatusAccepted:
				sum.accepted++
				continue
			case http.StatusConflict:
				sum.duplicate++
				continue
			case http.StatusUnprocessableEntity:
				sum.refused++
			case http.StatusBadRequest:
				sum.invalid++
			default:
				sum.failed++
			}
			fmt.Fprintf(stderr, "line %d (%s): %d %s\n", lineNo[i], r.ID, r.Status, r.Error)
		}
		return nil
	}

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), api.MaxRequestBytes)
	var batch []json.RawMessage
	first := 1
	lastProgress := time.Now()
	for sc.Scan() {
		sum.lines++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			// The API would reject the whole batch envelope; report the line here.
			sum.invalid++
			fmt.Fprintf(stderr, "line %d: not valid JSON\n", sum.lines)
			continue
		}
		if len(batch) == 0 {
			first = sum.lines
		}
		lineNo = append(lineNo, sum.lines)
		batch = append(batch, json.RawMessage(bytes.Clone(line)))
		if len(batch) == *batchSize {
			if err := send(batch, first); err != nil {
				return err
			}
			batch, lineNo = batch[:0], lineNo[:0]
			if time.Since(lastProgress) > time.Second {
				fmt.Fprintf(stderr, "progress: %d lines, %d accepted\n", sum.lines, sum.accepted)
				lastProgress = time.Now()
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	if len(batch) > 0 {
		if err := send(batch, first); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%d lines: %d accepted, %d duplicate, %d refused by the URL guard, %d invalid, %d failed (resend these)\n",
		sum.lines, sum.accepted, sum.duplicate, sum.refused, sum.invalid, sum.failed)
	if sum.failed > 0 {
		return fmt.Errorf("%d deliveries were not stored", sum.failed)
	}
	return nil
}

func healthcheckCommand(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errUsage{errors.New("usage: dispatcher healthcheck URL")}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
