// Command cilium-agent-sim plays the part of Cilium agent's monitor socket (protocol 1.2,
// pkg/monitor/agent/listener1_2.go) for dropscope's tests: it listens on a unix socket and,
// for each accepted connection, writes payload.Payload values with ONE gob.Encoder, exactly
// as the agent does. Standard library only; build with GO111MODULE=off.
//
// Scenario mode (default): phase 1 prints one JSON line with the expected summary of the
// whole scenario once it listens, serves one connection, optionally ends it with half a
// message, closes, then re-executes itself for phase 2 (a new process, as when the agent
// restarts: new encoder, new type definitions, and other type ids because it gob-encodes
// some dummy types first), and so on for -phases phases.
//
// Flood mode (-flood N): prints {"mode":"flood",...} once listening, writes N payloads
// carrying a -sample-len byte drop sample as fast as it can to one connection, and prints
// {"payloads":N,"bytes":B,"seconds":S,"payloads_per_sec":R}.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// Payload is pkg/monitor/payload.Payload.
type Payload struct {
	Data []byte
	CPU  int
	Lost uint64
	Type int
}

// AgentNotification and AgentNotify are pkg/monitor/api's.
type AgentNotification uint32

type AgentNotify struct {
	Type AgentNotification
	Text string
}

// A small struct shaped like pkg/proxy/accesslog.LogRecord, plus an interface field so the
// reader's generic gob skipper meets inline type definitions.
type EndpointInfo struct {
	ID       uint64
	IPv4     string
	Port     uint16
	Identity uint64
	Labels   []string
}

type LogRecordHTTP struct {
	Code    int
	Method  string
	URL     *url.URL
	Headers map[string][]string
}

type L7Meta struct {
	Proto  string
	Fields map[string]string
}

type LogRecord struct {
	Type                string
	Timestamp           string
	SourceEndpoint      EndpointInfo
	DestinationEndpoint EndpointInfo
	Verdict             string
	HTTP                *LogRecordHTTP
	Meta                interface{}
}

// Dummy types encoded before Payload so that type ids differ between "processes".
type Dummy1 struct{ A int }
type Dummy2 struct{ B int }
type Dummy3 struct{ C int }
type Dummy4 struct{ D int }
type Dummy5 struct{ E int }
type Dummy6 struct{ F int }
type Dummy7 struct{ G int }

const (
	eventSample = 9
	recordLost  = 2
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// withType returns a copy of v with byte 0 set to t (Cilium's Go tests leave it 0).
func withType(t byte, v string) []byte {
	b := mustHex(v)
	b[0] = t
	return b
}

// Packets from docs/cilium-vectors.md §10.
var (
	pktTCPACK = mustHex("0233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000501020007db60000")
	pktTCPSYN = mustHex("0233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000500220007dc40000")
	pktICMP   = mustHex("0233456789ab0123456789ab08004500001c0001000040016acd01020304050607080301fcfe00000000")
	pktVXLAN  = mustHex("11121314151601020304050608004500005a000100004011748d01010101020202022118270f004609e50c000003000002000233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000500220007dc40000")
)

// perfPad appends the 0..7 bytes the kernel adds so that 4+len is a multiple of 8.
func perfPad(b []byte) []byte {
	for (4+len(b))%8 != 0 {
		b = append(b, 0xee)
	}
	return b
}

// dropV3 builds a drop_notify version 3 (48 bytes, docs/cilium-formats.md §4.1) followed by pkt.
func dropV3(reason uint8, src uint16, hash uint32, pkt []byte, ifindex uint32) []byte {
	h := make([]byte, 48)
	h[0] = 1
	h[1] = reason
	binary.LittleEndian.PutUint16(h[2:], src)
	binary.LittleEndian.PutUint32(h[4:], hash)
	binary.LittleEndian.PutUint32(h[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint16(h[12:], uint16(len(pkt)))
	h[14] = 3
	binary.LittleEndian.PutUint32(h[16:], 12345)   // src_label
	binary.LittleEndian.PutUint32(h[20:], 2)       // dst_label (world)
	binary.LittleEndian.PutUint16(h[28:], 1234)    // line
	h[30] = 1                                      // file bpf_lxc.c
	binary.LittleEndian.PutUint32(h[32:], ifindex) // ifindex
	return perfPad(append(h, pkt...))
}

// capture6 builds a (removed) pcap-recorder capture_msg: 24-byte header then pkt.
func capture6(pkt []byte) []byte {
	h := make([]byte, 24)
	h[0] = 6
	binary.LittleEndian.PutUint32(h[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint16(h[12:], uint16(len(pkt)))
	return perfPad(append(h, pkt...))
}

// samples[t] lists raw samples of message type t (docs/cilium-vectors.md).
func samples() map[int][][]byte {
	drops := [][]byte{
		dropV3(133, 0x0203, 0x04050607, pktTCPACK, 7),
		dropV3(130, 0, 0, pktTCPSYN, 2),
		dropV3(181, 42, 0xdeadbeef, pktICMP, 3),
		dropV3(153, 7, 1, pktVXLAN, 4),
		withType(1, "00010302070605040b0a0908100e030014131211181716151c1b1a191e1d2021252423220f0000009900000000000000"), // §1.2
		withType(1, "00010302070605040b0a0908100e010014131211181716151c1b1a191e1d202125242322000000000000000000000000"), // §1.1
	}
	return map[int][][]byte{
		1: drops,
		2: {
			mustHex("0201000000000000010000000200000003000000"), // §8
			mustHex("023ad204a63b082a0a0b00e90200000000000000"),
			mustHex("020bd2048456d59d810000000000000000000000"),
			mustHex("02001027785634120a000000140000001e000000"),
		},
		3: {
			mustHex("030400000000000000000000000000000100000000000000"), // §7.6
			mustHex("03090000000000000000000000000000000004d200000000"),
		},
		4: {
			mustHex("04070000077c1a39420000004200000001000000000000000000810000000000f68db22d21d9f68db22d21d9080045000034ea1c400040067831c0a83c0b0a10ecb2192bd3ce2aefd21cb498816780100198d89c00000101080a005ab062005ab0610000"),                                                                         // §6.1
			mustHex("0405a80b5f16f2b85600000056000000680000000000000000000000000000003333ff00b3e5129106e2221a86dd6000000000203affff0200000000000000000001ff00b3e5f00d0000000000000a100000000091958700507500000000f00d0000000000000a1000000000b3e50101129106e2221a000000000000"),                         // §6.2
			mustHex("04070000077c1a3942000000420000000000000000000000000001040000000011121314151601020304050608004500005a000100004011f73ec0a80101c0a801022118270f004690870c000003000002000233456789ab0123456789ab08004500002800010000400666cb0a0100010a010002d3ce1f90000000000000000050022000887f0000"), // §6.3
			mustHex("0400d20400000000000000000000000000000000000000000000000000000000"), // §7.5
		},
		5: {
			mustHex("050000000000000000000000000000002e16000069ffffff00000001000000000000000000000000"),     // §7.4
			withType(5, "00010302070605040b0a09080d0c100014131211181716151a191b1c1d00000021201f1e00000000"), // §3
		},
		6: {capture6(pktTCPACK), capture6(pktICMP)},
		7: {
			mustHex("07010200901f0000eeffc0000000000000000000000000000a0a0a0a000000000000000000000000"),     // §9
			withType(7, "0001191a141300001817161500000000000000000000000002030405060708090a0b0c0d0e101112"), // §5
		},
	}
}

// agentData is what agent.SendEvent puts in Data: 0x82 ‖ a fresh gob stream.
func agentData(t AgentNotification, text string) []byte {
	var buf bytes.Buffer
	buf.WriteByte(130)
	if err := gob.NewEncoder(&buf).Encode(AgentNotify{Type: t, Text: text}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// l7Data is what the agent sends for an access-log record: 0x81 ‖ a fresh gob stream.
func l7Data(i int) []byte {
	u, _ := url.Parse("http://svc.default:8080/api?x=" + strconv.Itoa(i))
	rec := LogRecord{
		Type:                "request",
		Timestamp:           "2024-01-01T00:00:00Z",
		SourceEndpoint:      EndpointInfo{ID: 1234, IPv4: "10.0.0.1", Port: 43210, Identity: 12345, Labels: []string{"k8s:app=client"}},
		DestinationEndpoint: EndpointInfo{ID: 99, IPv4: "10.0.0.2", Port: 8080, Identity: 4},
		Verdict:             "Denied",
		HTTP:                &LogRecordHTTP{Code: 403, Method: "GET", URL: u, Headers: map[string][]string{"Accept": {"*/*"}}},
		Meta:                L7Meta{Proto: "http", Fields: map[string]string{"i": strconv.Itoa(i)}},
	}
	var buf bytes.Buffer
	buf.WriteByte(129)
	if err := gob.NewEncoder(&buf).Encode(rec); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

type agentEvent struct {
	Type uint32 `json:"type"`
	Text string `json:"text"`
}

// phasePayloads is the deterministic script of one phase (1-based).
func phasePayloads(phase, drops, each int) []Payload {
	sm := samples()
	var out []Payload
	if phase > 1 {
		out = append(out, Payload{Data: agentData(2, fmt.Sprintf(`{"phase":%d}`, phase)), Type: eventSample})
	}
	lost := []Payload{
		{CPU: 0, Lost: 1, Type: recordLost},
		{CPU: 3, Lost: 7, Type: recordLost},
		{CPU: 127, Lost: 1<<33 + 5, Type: recordLost},
		{CPU: 1, Lost: 0xFFFFFFFFFFFF, Type: recordLost},
		{CPU: 0, Lost: 0, Type: recordLost}, // every field zero but Type: gob omits them
	}
	agents := map[int][]agentEvent{
		1: {{0, ""}, {1, `{"message":"héllo"}`}, {3, `{"id":1}`}, {5, `{"rev":9}`}, {7, `{"id":2}`}, {9, `{"cidr":"10.0.0.0/8"}`}},
		2: {{4, `{"id":3}`}, {6, `{"rev":10}`}, {8, `{"id":2}`}, {10, `{"cidr":"10.0.0.0/8"}`}},
	}[phase]
	n := drops
	if each > n {
		n = each
	}
	for i := 0; i < n; i++ {
		if i < drops {
			d := sm[1][i%len(sm[1])]
			out = append(out, Payload{Data: d, CPU: i % 4, Type: eventSample})
		}
		if i < each {
			for t := 2; t <= 7; t++ {
				v := sm[t][i%len(sm[t])]
				out = append(out, Payload{Data: v, CPU: (i + t) % 8, Type: eventSample})
			}
		}
		if i%97 == 5 && len(lost) > 0 {
			out = append(out, lost[0])
			lost = lost[1:]
		}
		if i%53 == 1 && len(agents) > 0 {
			a := agents[0]
			out = append(out, Payload{Data: agentData(AgentNotification(a.Type), a.Text), Type: eventSample})
			agents = agents[1:]
		}
	}
	for _, l := range lost {
		out = append(out, l)
	}
	for _, a := range agents {
		out = append(out, Payload{Data: agentData(AgentNotification(a.Type), a.Text), Type: eventSample})
	}
	for i := 0; i < 3-phase%2; i++ {
		out = append(out, Payload{Data: l7Data(i), CPU: 1, Type: eventSample})
	}
	out = append(out,
		Payload{Data: []byte{0, 1, 2, 3}, CPU: 2, Type: eventSample}, // type 0: unspec
		Payload{Data: []byte{8, 0}, CPU: 2, Type: eventSample},       // type 8: unknown
		Payload{Data: []byte{1, 2}, CPU: 5, Lost: 3, Type: 99},       // unknown payload type
		Payload{Type: eventSample},                                   // empty sample
	)
	return out
}

type summary struct {
	Phases         int            `json:"phases"`
	Payloads       int            `json:"payloads"`
	Samples        map[string]int `json:"samples"`
	LostRecords    int            `json:"lost_records"`
	LostTotal      uint64         `json:"lost_total"`
	Agent          []agentEvent   `json:"agent"`
	L7             int            `json:"l7"`
	Unknown        int            `json:"unknown"`
	PayloadTypeIDs []int          `json:"payload_type_ids"`
	CutPartial     int            `json:"cut_partial"`
	Bytes          map[string]int `json:"sample_bytes"`
}

func expected(phases, drops, each, dummyBase int, cut bool) summary {
	s := summary{Phases: phases, Samples: map[string]int{}, Bytes: map[string]int{}, Agent: []agentEvent{}}
	for p := 1; p <= phases; p++ {
		for _, pl := range phasePayloads(p, drops, each) {
			s.Payloads++
			switch {
			case pl.Type == recordLost:
				s.LostRecords++
				s.LostTotal += pl.Lost
			case pl.Type == eventSample && len(pl.Data) > 0 && pl.Data[0] >= 1 && pl.Data[0] <= 7:
				k := strconv.Itoa(int(pl.Data[0]))
				s.Samples[k]++
				s.Bytes[k] += len(pl.Data)
			case pl.Type == eventSample && len(pl.Data) > 0 && pl.Data[0] == 129:
				s.L7++
			case pl.Type == eventSample && len(pl.Data) > 0 && pl.Data[0] == 130:
				var an AgentNotify
				if err := gob.NewDecoder(bytes.NewReader(pl.Data[1:])).Decode(&an); err != nil {
					panic(err)
				}
				s.Agent = append(s.Agent, agentEvent{uint32(an.Type), an.Text})
			default:
				s.Unknown++
			}
		}
		s.PayloadTypeIDs = append(s.PayloadTypeIDs, 65+dummiesFor(p, dummyBase))
		if cut && p < phases {
			s.CutPartial++
		}
	}
	return s
}

func dummiesFor(phase, base int) int {
	n := base + (phase-1)*3
	if n > 7 {
		n = 7
	}
	return n
}

// registerTypes gives this process its type ids: n dummy types, then Payload first of the
// rest (so Payload's id is 65+n), like an agent that gob-encoded other things before.
func registerTypes(n int) {
	dummies := []interface{}{Dummy1{1}, Dummy2{1}, Dummy3{1}, Dummy4{1}, Dummy5{1}, Dummy6{1}, Dummy7{1}}
	enc := gob.NewEncoder(ioutil.Discard)
	for i := 0; i < n && i < len(dummies); i++ {
		if err := enc.Encode(dummies[i]); err != nil {
			panic(err)
		}
	}
	if err := enc.Encode(Payload{Type: 1}); err != nil {
		panic(err)
	}
}

func listen(path string) *net.UnixListener {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cilium-agent-sim: cannot listen on %s: %v\n", path, err)
		os.Exit(2)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(true)
	// Tests are bounded in time: nobody connecting within a minute is a failure.
	_ = ul.SetDeadline(time.Now().Add(60 * time.Second))
	return ul
}

func printJSON(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(b, '\n'))
}

// switchWriter lets the encoder's output go to a buffer for the cut-short last message.
type switchWriter struct{ w io.Writer }

func (s *switchWriter) Write(b []byte) (int, error) { return s.w.Write(b) }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func flood(path string, n, sampleLen int) {
	registerTypes(0)
	ln := listen(path)
	printJSON(map[string]interface{}{"mode": "flood", "payloads": n, "socket": path})
	conn, err := ln.Accept()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cilium-agent-sim: accept: %v\n", err)
		os.Exit(2)
	}
	ln.Close()
	sample := dropV3(133, 1, 2, make([]byte, 0), 1)
	for len(sample) < sampleLen {
		sample = append(sample, byte(len(sample)))
	}
	sample = sample[:sampleLen]
	cw := &countingWriter{w: conn}
	enc := gob.NewEncoder(cw)
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := enc.Encode(&Payload{Data: sample, CPU: i % 8, Type: eventSample}); err != nil {
			fmt.Fprintf(os.Stderr, "cilium-agent-sim: write: %v\n", err)
			os.Exit(2)
		}
	}
	secs := time.Since(start).Seconds()
	conn.Close()
	printJSON(map[string]interface{}{"payloads": n, "bytes": cw.n, "seconds": secs, "payloads_per_sec": float64(n) / secs})
}

func main() {
	path := flag.String("socket", "", "unix socket path to listen on (required)")
	phase := flag.Int("phase", 1, "phase of the scenario this process serves (1-based)")
	phases := flag.Int("phases", 2, "number of phases (one agent process and connection each)")
	dummyBase := flag.Int("dummy-types", 0, "dummy types gob-encoded before Payload in phase 1 (phase k adds 3(k-1))")
	drops := flag.Int("drops", 2000, "drop samples per phase")
	each := flag.Int("each", 6, "samples of each other message type (2..7) per phase")
	cut := flag.Bool("cut-partial", false, "end every phase but the last with half a message")
	floodN := flag.Int("flood", 0, "flood mode: write this many payloads as fast as possible")
	sampleLen := flag.Int("sample-len", 100, "flood mode: bytes per drop sample")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "cilium-agent-sim: -socket is required")
		os.Exit(2)
	}
	if *floodN > 0 {
		flood(*path, *floodN, *sampleLen)
		return
	}
	registerTypes(dummiesFor(*phase, *dummyBase))
	gob.Register(L7Meta{})
	ln := listen(*path)
	if *phase == 1 {
		printJSON(expected(*phases, *drops, *each, *dummyBase, *cut))
	}
	conn, err := ln.Accept()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cilium-agent-sim: accept: %v\n", err)
		os.Exit(2)
	}
	ln.Close()
	sw := &switchWriter{w: conn}
	enc := gob.NewEncoder(sw) // ONE encoder per connection, like listener1_2.go
	for _, p := range phasePayloads(*phase, *drops, *each) {
		p := p
		if err := enc.Encode(&p); err != nil {
			fmt.Fprintf(os.Stderr, "cilium-agent-sim: write: %v\n", err)
			os.Exit(2)
		}
	}
	if *cut && *phase < *phases {
		var buf bytes.Buffer
		sw.w = &buf
		sm := samples()
		if err := enc.Encode(&Payload{Data: sm[1][0], CPU: 3, Type: eventSample}); err != nil {
			panic(err)
		}
		if _, err := conn.Write(buf.Bytes()[:buf.Len()/2]); err != nil {
			fmt.Fprintf(os.Stderr, "cilium-agent-sim: write: %v\n", err)
			os.Exit(2)
		}
	}
	conn.Close()
	if *phase < *phases {
		args := []string{
			"-socket", *path,
			"-phase", strconv.Itoa(*phase + 1),
			"-phases", strconv.Itoa(*phases),
			"-dummy-types", strconv.Itoa(*dummyBase),
			"-drops", strconv.Itoa(*drops),
			"-each", strconv.Itoa(*each),
			"-cut-partial=" + strconv.FormatBool(*cut),
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stdout = os.Stdout
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "cilium-agent-sim: phase %d: %v\n", *phase+1, err)
			os.Exit(1)
		}
	}
}
