using System.Globalization;
using System.Text;

namespace NeuralCore.IO;

/// <summary>
/// Parses the small subset of Python literal syntax that <c>.npy</c> headers use: a dict with string keys
/// whose values are strings, integers (an old Python 2 'L' suffix allowed), True, False, None, tuples and
/// lists. Nothing is evaluated.
/// </summary>
internal static class PythonLiteral
{
    /// <summary>A parsed Python tuple; kept apart from lists because NumPy requires the shape to be a tuple.</summary>
    internal sealed record Tuple(IReadOnlyList<object?> Items);

    /// <summary>Parses <paramref name="text"/> as one dict literal followed only by whitespace.</summary>
    /// <exception cref="FormatException">The text is not such a literal; the message says where and why.</exception>
    public static Dictionary<string, object?> ParseDict(string text)
    {
        var parser = new Parser(text);
        parser.SkipWhitespace();
        var dict = parser.ParseDictBody();
        parser.SkipWhitespace();
        if (!parser.AtEnd)
        {
            throw parser.Error("unexpected text after the closing '}'");
        }
        return dict;
    }

    /// <summary>Formats a parsed value the way Python's repr would, for error messages.</summary>
    public static string Repr(object? value) => value switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        string s => $"'{s}'",
        Tuple { Items.Count: 1 } t => $"({Repr(t.Items[0])},)",
        Tuple t => $"({string.Join(", ", t.Items.Select(Repr))})",
        List<object?> list => $"[{string.Join(", ", list.Select(Repr))}]",
        Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(p => $"'{p.Key}': {Repr(p.Value)}")) + "}",
        _ => value.ToString() ?? "",
    };

    private sealed class Parser(string text)
    {
        /// <summary>Deepest nesting accepted; real headers nest at most a few levels, and a bound keeps a hostile header from exhausting the stack.</summary>
        private const int MaxDepth = 32;

        private int _pos;
        private int _depth;

        public bool AtEnd => _pos >= text.Length;

        public FormatException Error(string problem) => new($"{problem} at character {_pos}");

        public void SkipWhitespace()
        {
            while (_pos < text.Length && char.IsWhiteSpace(text[_pos]))
            {
                _pos++;
            }
        }

        public Dictionary<string, object?> ParseDictBody()
        {
            Expect('{');
            var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (true)
            {
                SkipWhitespace();
                if (TryConsume('}'))
                {
                    return dict;
                }
                if (Peek() is not ('\'' or '"'))
                {
                    throw Error("expected a quoted key or '}'");
                }
                string key = ParseString();
                SkipWhitespace();
                Expect(':');
                // NOTE: a repeated key keeps its last value, as Python's dict literal does.
                dict[key] = ParseValue();
                SkipWhitespace();
                if (!TryConsume(','))
                {
                    SkipWhitespace();
                    Expect('}');
                    return dict;
                }
            }
        }

        private object? ParseValue()
        {
            if (++_depth > MaxDepth)
            {
                throw Error($"values nested more than {MaxDepth} levels deep");
            }
            try
            {
                return ParseScalarOrContainer();
            }
            finally
            {
                _depth--;
            }
        }

        private object? ParseScalarOrContainer()
        {
            SkipWhitespace();
            char c = Peek();
            switch (c)
            {
                case '\'' or '"':
                    return ParseString();
                case '(':
                    return ParseSequence(')');
                case '[':
                    return ParseSequence(']');
                case '{':
                    return ParseDictBody();
                case '-' or '+' or (>= '0' and <= '9'):
                    return ParseInteger();
            }
            foreach (var (word, value) in new (string, object?)[] { ("True", true), ("False", false), ("None", null) })
            {
                if (string.CompareOrdinal(text, _pos, word, 0, word.Length) == 0 && !IsIdentifierChar(_pos + word.Length))
                {
                    _pos += word.Length;
                    return value;
                }
            }
            throw Error(AtEnd ? "unexpected end of header" : $"unexpected '{c}'");
        }

        /// <summary>
        /// Parses a tuple or list. As in Python, "(x)" is just x in parentheses, "(x,)" a one-element tuple
        /// and "()" the empty tuple.
        /// </summary>
        private object? ParseSequence(char close)
        {
            _pos++;
            var items = new List<object?>();
            bool trailingComma = false;
            while (true)
            {
                SkipWhitespace();
                if (TryConsume(close))
                {
                    break;
                }
                items.Add(ParseValue());
                SkipWhitespace();
                trailingComma = TryConsume(',');
                if (!trailingComma)
                {
                    SkipWhitespace();
                    Expect(close);
                    break;
                }
            }
            if (close == ']')
            {
                return items;
            }
            return items.Count == 1 && !trailingComma ? items[0] : new Tuple(items);
        }

        private long ParseInteger()
        {
            int start = _pos;
            if (Peek() is '-' or '+')
            {
                _pos++;
            }
            int digitsStart = _pos;
            while (_pos < text.Length && char.IsAsciiDigit(text[_pos]))
            {
                _pos++;
            }
            if (_pos == digitsStart)
            {
                throw Error("expected digits");
            }
            string digits = text[start.._pos];
            if (Peek() is 'L' or 'l')
            {
                _pos++;
            }
            if (IsIdentifierChar(_pos) || Peek() == '.')
            {
                throw Error("expected an integer");
            }
            if (!long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            {
                throw Error($"integer {digits} is out of range");
            }
            return value;
        }

        private string ParseString()
        {
            char quote = text[_pos++];
            var result = new StringBuilder();
            while (true)
            {
                if (AtEnd)
                {
                    throw Error("unterminated string");
                }
                char c = text[_pos++];
                if (c == quote)
                {
                    return result.ToString();
                }
                if (c == '\\' && !AtEnd)
                {
                    char escaped = text[_pos++];
                    result.Append(escaped switch
                    {
                        'n' => "\n",
                        't' => "\t",
                        'r' => "\r",
                        '\\' or '\'' or '"' => escaped.ToString(),
                        _ => "\\" + escaped,
                    });
                }
                else
                {
                    result.Append(c);
                }
            }
        }

        private char Peek() => _pos < text.Length ? text[_pos] : '\0';

        private bool IsIdentifierChar(int index) =>
            index < text.Length && (char.IsLetterOrDigit(text[index]) || text[index] == '_');

        private bool TryConsume(char c)
        {
            if (Peek() == c && !AtEnd)
            {
                _pos++;
                return true;
            }
            return false;
        }

        private void Expect(char c)
        {
            if (!TryConsume(c))
            {
                throw Error(AtEnd ? $"expected '{c}' but the header ended" : $"expected '{c}' but found '{Peek()}'");
            }
        }
    }
}
