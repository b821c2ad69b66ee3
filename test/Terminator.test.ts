import { describe, expect, it } from "@effect/vitest"
import * as Terminator from "../src/Terminator.ts"

describe("Terminator", () => {
  it("encodes a string delimiter as UTF-8 and copies byte delimiters", () => {
    expect([...Terminator.delimiter("é\n").bytes]).toEqual([0xc3, 0xa9, 0x0a])
    const source = new Uint8Array([1, 2])
    const t = Terminator.delimiter(source)
    source[0] = 9
    expect([...t.bytes]).toEqual([1, 2])
  })

  it("refuses an empty delimiter, which asynchat would treat as collect-forever", () => {
    expect(() => Terminator.delimiter("")).toThrow(Terminator.InvalidTerminator)
    expect(() => Terminator.delimiter(new Uint8Array(0))).toThrow(/must not be empty/)
  })

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53])("refuses the length %s", (n) => {
    expect(() => Terminator.length(n)).toThrow(Terminator.InvalidTerminator)
  })

  it("accepts length 0 (an immediate empty frame) and positive counts", () => {
    expect(Terminator.length(0)).toEqual({ _tag: "Length", length: 0 })
    expect(Terminator.length(701).length).toBe(701)
  })

  it("formats terminators for logs", () => {
    expect(Terminator.format(Terminator.crlf)).toBe("delimiter \"\\r\\n\"")
    expect(Terminator.format(Terminator.length(7))).toBe("length 7")
    expect(Terminator.format(Terminator.none)).toBe("none")
  })

  it("carries a typed, catchable error", () => {
    try {
      Terminator.length(-3)
      expect.unreachable()
    } catch (error) {
      expect(error).toBeInstanceOf(Terminator.InvalidTerminator)
      expect((error as Terminator.InvalidTerminator)._tag).toBe("InvalidTerminator")
      expect((error as Terminator.InvalidTerminator).message).toContain("-3")
    }
  })
})
