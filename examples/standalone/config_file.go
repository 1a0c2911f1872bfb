package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"
)

// readFile sets the fields of c that the JSON config file at path names.
// Unknown fields are errors; so is anything after the top-level object.
func (c *config) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	c.file = path
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s: empty file: want a JSON object", path)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%s: unexpected end of file", path)
		case errors.As(err, &se):
			line, col := position(data, se.Offset-1) // Offset is just past the bad byte
			return fmt.Errorf("%s:%d:%d: invalid JSON: %v", path, line, col, se)
		}
		// encoding/json names neither the path of an unknown field nor the
		// field of a value its UnmarshalJSON rejects: find them.
		if fe := explain(data, reflect.TypeFor[config]()); fe != nil {
			return fmt.Errorf("%s: %w", path, fe)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		end += int64(len(data[end:]) - len(bytes.TrimLeft(data[end:], " \t\r\n")))
		line, col := position(data, end)
		return fmt.Errorf("%s:%d:%d: unexpected data after the top-level object", path, line, col)
	}
	return nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// position returns the line and column of byte offset off in data.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

var durationType = reflect.TypeFor[duration]()

// explain walks the JSON in data along type t (the way encoding/json
// decodes it, matching names case-insensitively) and returns the first
// value that does not fit, with its path, or nil.
func explain(data []byte, t reflect.Type) *fieldError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	return walk("", v, t)
}

func walk(path string, v any, t reflect.Type) *fieldError {
	if v == nil {
		return nil // null leaves a field as it is
	}
	want := func(what string) *fieldError { return badf(path, jsonText(v), "want %s", what) }
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return badf(path, jsonText(v), `invalid duration: want a string such as "2s"`)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return badf(path, quote(s), "invalid duration")
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return walk(path, v, t.Elem())
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return want("an object")
		}
		return walkStruct(path, m, t)
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			return want("an array")
		}
		for i, e := range a {
			if err := walk(index(path, i), e, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return want("an object")
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := walk(path+"["+quote(k)+"]", m[k], t.Elem()); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return want("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return want("true or false")
		}
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return want("a number")
		}
		if _, err := n.Float64(); err != nil {
			return want("a number")
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return want("an integer")
		}
		i, err := n.Int64()
		if err != nil || reflect.New(t).Elem().OverflowInt(i) {
			return want("an integer")
		}
	}
	return nil
}

// walkStruct is walk of a JSON object m along struct type t: each of its
// names must be a field of t.
func walkStruct(path string, m map[string]any, t reflect.Type) *fieldError {
	var names []string
	for i := range t.NumField() {
		if n := jsonName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		i := slices.Index(names, k)
		if i < 0 {
			i = slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, k) })
		}
		sub := k
		if path != "" {
			sub = path + "." + k
		}
		if i < 0 {
			return badf(sub, "", "unknown field (want %s)", orList(names))
		}
		f, _ := fieldByJSONName(t, names[i])
		if err := walk(sub, m[k], f.Type); err != nil {
			return err
		}
	}
	return nil
}

// jsonText is v, as decoded with UseNumber, written back briefly.
func jsonText(v any) string {
	switch v.(type) {
	case map[string]any:
		return "{...}"
	case []any:
		return "[...]"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if jsonName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
