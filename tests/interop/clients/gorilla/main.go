// The interop scenario (../README.md) with Go's gorilla/websocket client.
//
// Built by the Rust test against Debian's GOPATH package
// (GOPATH=/usr/share/gocode GO111MODULE=off go build).
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

const (
	text  = "héllo ✓"
	step  = 15 * time.Second // one step
	total = 45 * time.Second // the whole run (the Rust test allows a little more)
)

type message struct {
	Kind  string `json:"kind"`
	Value string `json:"value,omitempty"`
	Hex   string `json:"hex,omitempty"`
}

type big struct {
	Kind   string `json:"kind"`
	Len    int    `json:"len"`
	Intact bool   `json:"intact"`
}

type closeFrame struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

type report struct {
	Client      string      `json:"client"`
	Offered     string      `json:"offered"`
	Subprotocol string      `json:"subprotocol"`
	First       *message    `json:"first,omitempty"`
	Text        *message    `json:"text,omitempty"`
	Binary      *message    `json:"binary,omitempty"`
	Big         *big        `json:"big,omitempty"`
	Close       *closeFrame `json:"close"`
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((7*i + 13*(i>>8) + 17*(i>>16)) & 0xff)
	}
	return b
}

func describe(kind int, data []byte) *message {
	switch kind {
	case websocket.TextMessage:
		return &message{Kind: "text", Value: string(data)}
	case websocket.BinaryMessage:
		return &message{Kind: "binary", Hex: hex.EncodeToString(data)}
	}
	return &message{Kind: fmt.Sprintf("opcode %d", kind)}
}

func read(c *websocket.Conn) (int, []byte, error) {
	c.SetReadDeadline(time.Now().Add(step))
	return c.ReadMessage()
}

func echo(c *websocket.Conn, kind int, payload []byte) (int, []byte, error) {
	c.SetWriteDeadline(time.Now().Add(step))
	if err := c.WriteMessage(kind, payload); err != nil {
		return 0, nil, err
	}
	return read(c)
}

func run(mode, url, name, protocol string) (*report, error) {
	r := &report{Client: name, Offered: protocol}
	d := websocket.Dialer{HandshakeTimeout: step}
	if protocol != "" {
		d.Subprotocols = []string{protocol}
	}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	// SetReadLimit is unset: gorilla then reads messages of any size.
	r.Subprotocol = c.Subprotocol()
	if mode == "live" {
		kind, data, err := read(c)
		if err != nil {
			return nil, fmt.Errorf("the first message: %w", err)
		}
		r.First = describe(kind, data)
	} else {
		kind, data, err := echo(c, websocket.TextMessage, []byte(text))
		if err != nil {
			return nil, fmt.Errorf("the text echo: %w", err)
		}
		r.Text = describe(kind, data)
		seq := make([]byte, 256)
		for i := range seq {
			seq[i] = byte(i)
		}
		if kind, data, err = echo(c, websocket.BinaryMessage, seq); err != nil {
			return nil, fmt.Errorf("the binary echo: %w", err)
		}
		r.Binary = describe(kind, data)
		want := pattern(1 << 20)
		if kind, data, err = echo(c, websocket.BinaryMessage, want); err != nil {
			return nil, fmt.Errorf("the 1 MiB echo: %w", err)
		}
		r.Big = &big{Kind: describe(kind, nil).Kind, Len: len(data), Intact: bytes.Equal(data, want)}
	}
	bye := websocket.FormatCloseMessage(4001, "bye "+name)
	if err := c.WriteControl(websocket.CloseMessage, bye, time.Now().Add(step)); err != nil {
		return nil, fmt.Errorf("sending close: %w", err)
	}
	// ReadMessage returns the server's close frame as a *CloseError (gorilla answers
	// a close itself only when the peer started it; here we did).
	for {
		_, _, err := read(c)
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			r.Close = &closeFrame{Code: ce.Code, Reason: ce.Text}
			return r, nil
		}
		if err != nil {
			return nil, fmt.Errorf("waiting for the close answer: %w", err)
		}
	}
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: gorilla echo|live URL NAME [PROTOCOL]")
		os.Exit(2)
	}
	protocol := ""
	if len(os.Args) > 4 {
		protocol = os.Args[4]
	}
	done := make(chan struct{})
	time.AfterFunc(total, func() {
		select {
		case <-done:
		default:
			fmt.Fprintln(os.Stderr, "timed out: the whole scenario")
			os.Exit(1)
		}
	})
	r, err := run(os.Args[1], os.Args[2], os.Args[3], protocol)
	close(done)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
