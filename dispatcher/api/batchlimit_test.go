package api

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestBatchRequestLimit: the batch body's strictjson limit is MaxBatchItems
// (a struct tag cannot name the constant).
func TestBatchRequestLimit(t *testing.T) {
	f, ok := reflect.TypeFor[batchRequest]().FieldByName("Deliveries")
	if !ok {
		t.Fatal("batchRequest has no Deliveries field")
	}
	if got, want := f.Tag.Get("strictjson"), fmt.Sprintf("maxItems=%d", MaxBatchItems); got != want {
		t.Errorf("batchRequest.Deliveries has strictjson tag %q, want %q", got, want)
	}
}

// TestBatchItemLimit: a batch of MaxBatchItems items is taken; one item
// more is answered 413 too_many_items with the count, as before the limit
// moved into the decoder, and nothing is stored; a malformed body stays 400
// malformed whatever its length.
func TestBatchItemLimit(t *testing.T) {
	svc := newFakeService()
	srv := newTestAPI(t, svc)
	item := func(i int) string {
		return `{"webhook":"https://127.0.0.1:8443/h","generation":` + generationJSON(fmt.Sprintf("limit-%d", i), "", "") + `}`
	}
	batch := func(n int, tail string) []byte {
		items := make([]string, n)
		for i := range items {
			items[i] = item(i)
		}
		return []byte(`{"deliveries":[` + strings.Join(items, ",") + tail + `]}`)
	}
	post := func(body []byte) response {
		return rawRequest{method: http.MethodPost, path: "/v1/deliveries/batch", token: testToken, ctype: "application/json", body: body}.send(t, srv.URL)
	}

	if resp := post(batch(MaxBatchItems+1, "")); resp.Status != http.StatusRequestEntityTooLarge ||
		string(resp.Body) != `{"code":"too_many_items","error":"at most 500 deliveries per batch, got 501"}`+"\n" {
		t.Errorf("501 items: %d %s, want 413 too_many_items", resp.Status, resp.Body)
	}
	zeros := []byte(`{"deliveries":[` + strings.TrimSuffix(strings.Repeat("0,", 400_000), ",") + `]}`)
	if resp := post(zeros); resp.Status != http.StatusRequestEntityTooLarge ||
		string(resp.Body) != `{"code":"too_many_items","error":"at most 500 deliveries per batch, got 400000"}`+"\n" {
		t.Errorf("400000 raw items: %d %s, want 413 too_many_items", resp.Status, resp.Body)
	}
	if resp := post(batch(MaxBatchItems+1, `,{"webhook":}`)); resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), `"code":"malformed"`) {
		t.Errorf("501 items then a syntax error: %d %s, want 400 malformed", resp.Status, resp.Body)
	}
	if ids := svc.storedIDs(); len(ids) != 0 {
		t.Fatalf("stored %d deliveries from refused batches", len(ids))
	}

	resp := post(batch(MaxBatchItems, ""))
	if resp.Status != http.StatusOK || strings.Count(string(resp.Body), `"status":202`) != MaxBatchItems {
		t.Errorf("500 items: %d %.200s, want 200 with 500 items accepted", resp.Status, resp.Body)
	}
	if ids := svc.storedIDs(); len(ids) != MaxBatchItems {
		t.Errorf("stored %d deliveries of a full batch, want %d", len(ids), MaxBatchItems)
	}
}
