#!/usr/bin/env python3
"""Print a completion from `drafteu serve` with each token coloured by its epistemic uncertainty.

Standard library only. The server streams one chunk per token; each chunk carries the text that
token released and its uncertainty record (eu_hat, and whether the server's --eu-flag flagged it):

    green   eu_hat <= threshold / 10
    yellow  eu_hat <= threshold
    red     eu_hat >  threshold, or flagged by the server

Example:
    drafteu serve --model m.gguf --draft m.gguf --draft-noise 4 --port 8080 &
    python3 examples/client.py --url http://127.0.0.1:8080 --model m --prompt "Once upon a time"
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.request

GREEN, YELLOW, RED, RESET = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[0m"


def colour(record, threshold):
    if not record or record.get("eu_hat") is None:
        return ""
    eu = record["eu_hat"]
    if record.get("flagged") or eu > threshold:
        return RED
    return YELLOW if eu > threshold / 10 else GREEN


def stream_completion(args):
    """Yields the parsed server-sent events of a streamed /v1/completions request."""
    body = {"model": args.model, "prompt": args.prompt, "max_tokens": args.max_tokens,
            "temperature": args.temperature, "stream": True}
    if args.seed is not None:
        body["seed"] = args.seed
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    req = urllib.request.Request(args.url.rstrip("/") + "/v1/completions",
                                 data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=args.timeout) as res:
        for raw in res:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                return
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(event["error"].get("message", "server error"))
            yield event


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--model", required=True, help="model name the server serves")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--api-key", default=os.environ.get("DRAFTEU_API_KEY", ""))
    p.add_argument("--threshold", type=float, default=0.1, help="eu_hat above this is red (nats)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    use_colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())

    out = sys.stdout
    summary = speculative = None
    try:
        out.write(args.prompt)
        for event in stream_completion(args):
            choice = event["choices"][0]
            records = choice.get("uncertainty") or [None]
            text = choice.get("text", "")
            if text:
                c = colour(records[0], args.threshold) if use_colour else ""
                out.write(c + text + (RESET if c else ""))
                out.flush()
            summary = choice.get("uncertainty_summary", summary)
            speculative = event.get("speculative", speculative)
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        print(f"\nerror: HTTP {e.code}: {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, RuntimeError, OSError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    out.write("\n")
    if summary:
        line = (f"eu_sum {summary['eu_sum']:.4f}  eu_mean {summary['eu_mean']:.4f}  "
                f"eu_max {summary['eu_max']:.4f}  flagged spans {len(summary['flagged_spans'])}")
        if summary.get("p_error") is not None:
            line += f"  p_error {summary['p_error']:.3f}"
        print(line, file=sys.stderr)
    if speculative:
        print(f"draft acceptance {speculative['draft_acceptance_rate']:.3f}, "
              f"{speculative['mean_accepted_length']:.2f} tokens per round", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
