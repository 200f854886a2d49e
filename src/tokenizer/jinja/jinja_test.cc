// Unit tests of the Jinja interpreter, feature by feature. The expected outputs of kCases were
// produced by the reference implementation, jinja2 3.1.6, configured as HF transformers renders
// chat templates (trim_blocks=True, lstrip_blocks=True, tojson = json.dumps(ensure_ascii=False),
// loopcontrols + do extensions), so each case checks kiln against real Jinja behaviour.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"

namespace kiln::jinja {
namespace {

struct Rendered {
  bool ok = false;
  std::string text;  // output, or the error description
};

Rendered RenderWith(const std::string& source, const std::string& vars_json,
                    RenderLimits limits = {}) {
  Rendered r;
  try {
    ContainerArena arena;
    Body body = ParseTemplate(Tokenize(source));
    ValueDict globals;
    AddGlobalFunctions(&globals);
    nlohmann::ordered_json vars = nlohmann::ordered_json::parse(vars_json);
    for (auto it = vars.begin(); it != vars.end(); ++it)
      globals.Set(it.key(), FromJson(it.value()));
    Interpreter interp(limits);
    r.text = interp.Render(body, globals);
    r.ok = true;
  } catch (const TemplateError& e) {
    r.text = e.Describe();
  }
  return r;
}

struct Case {
  const char* group;
  const char* source;
  const char* vars;
  const char* expected;
};

const Case kCases[] = {
    // ---- Whitespace
    {"Whitespace", "  {% if true %}\n  yes\n  {% endif %}\n  {# c #}\nend\n", "{}", "  yes\nend"},
    {"Whitespace", "a  {%+ if true %}x{% endif +%}\nb", "{}", "a  x\nb"},
    {"Whitespace", "{% for i in range(3) %}\n  {{ i }}\n{% endfor %}\n", "{}", "  0\n  1\n  2\n"},
    {"Whitespace", "{%- for i in range(3) -%}\n  {{ i }}\n{%- endfor -%}\n", "{}", "012"},
    {"Whitespace", "x {{- ' y ' -}} z", "{}", "x y z"},
    {"Whitespace", "{#- comment -#}  x  {#- c #}\n  y", "{}", "x  y"},
    {"Whitespace", "{%- set x = 1 -%}\n\n  {{- x -}}\n\n", "{}", "1"},
    {"Whitespace", "a\n{% if true %}\nb\n{% endif %}\nc\n", "{}", "a\nb\nc"},
    {"Whitespace", "line1\n    {%- if true %}\n    t\n    {%- endif %}\nend", "{}",
     "line1    tend"},
    {"Whitespace", "{{ 'x' }}\n{% if true %}y{% endif %}\n  {{ 'z' }}  \n", "{}", "x\ny  z  "},
    {"Whitespace", "a\r\nb\r\n{% if true %}\r\nc{% endif %}\r\n", "{}", "a\nb\nc"},
    {"Whitespace", "{% raw %}{{ not }} {% if %}{% endraw %}", "{}", "{{ not }} {% if %}"},
    // ---- Literals
    {"Literals",
     "{{ 1 + 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 / 2 }} {{ "
     "4 / 2 }}",
     "{}", "3 3 -4 1 2 1024 0.5 2.0"},
    {"Literals",
     "{{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 3.0 }} {{ 100.0 * 3 }} {{ 1e16 }}",
     "{}", "2.5 0.30000000000000004 1e+20 1.5e-07 3.0 300.0 1e+16"},
    {"Literals", "{{ 'a' ~ 1 ~ none ~ true ~ x }}", "{}", "a1NoneTrue"},
    {"Literals", "{{ [1, 'a', none, true, {'k': 1.0}] }} {{ (1, 2) }} {{ (1,) }}", "{}",
     "[1, 'a', None, True, {'k': 1.0}] (1, 2) (1,)"},
    {"Literals", "{{ \"it's\" }} {{ [\"it's\", 'say \"hi\"'] }}", "{}",
     "it's [\"it's\", 'say \"hi\"']"},
    {"Literals",
     "{{ 'abc' 'def' }} {{ \"a\\u00e9\\x41\" }} {{ 'tab\\there' }} {{ 'back\\\\slash' }}", "{}",
     "abcdef aéA tab\there back\\slash"},
    {"Literals", "{{ d }}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "{'a': 1, 'b': [1, 2, {'c': 'x'}], 'z': None, 'u': 'héllo wörld', 'f': 1.5}"},
    {"Literals", "{{ [1,2] + [3] }} {{ 'ab' * 3 }} {{ [0] * 3 }} {{ 3 * 'x' }}", "{}",
     "[1, 2, 3] ababab [0, 0, 0] xxx"},
    {"Literals", "{{ (1, 2) }} {{ [1,2,3]|length - 1 }} {{ -2 ** 2 }}", "{}", "(1, 2) 2 4"},
    {"Literals", "{{ 1 + 2 * 3 - 4 / 2 }} {{ (1 + 2) * 3 }} {{ 10 - 2 - 3 }} {{ 2 * 3 % 4 }}", "{}",
     "5.0 9 5 2"},
    // ---- Operators
    {"Operators",
     "{{ true and 'x' }} {{ false or 'y' }} {{ not 1 }} {{ 1 in [1,2] }} {{ 'a' not in 'bcd' }} {{ "
     "'k' in {'k':1} }}",
     "{}", "x y False True True True"},
    {"Operators",
     "{{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }} {{ 'a' if x else 'b' }} [{{ 'a' if x }}] {{ 1 != 2 }} {{ 2 "
     ">= 2 }} {{ 1 <= 0 }}",
     "{}", "True False b [] True True False"},
    {"Operators",
     "{{ 1 == 1.0 }} {{ true == 1 }} {{ [1,2] == [1,2] }} {{ {'a':1} == {'a':1} }} {{ 'a' < 'b' }} "
     "{{ [1,2] < [1,3] }} {{ none == none }} {{ x == y }}",
     "{}", "True True True True True True True True"},
    {"Operators",
     "{% set t = 'x' %}{{ t is string and t|length == 1 }} {{ not t is defined }} {{ not (t is "
     "defined) }}",
     "{}", "True False False"},
    {"Operators", "{{ x in [1] }} {{ 'a' in x }}", "{}", "False False"},
    // ---- Loops
    {"Loops",
     "{% for m in M %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 "
     "}}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem.role if loop.previtem "
     "is defined }}/{{ loop.nextitem.role if loop.nextitem is defined }};{% endfor %}",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "1/0/3/2/True/False/3//user;2/1/2/1/False/False/3/system/assistant;3/2/1/0/False/True/3/user/"
     ";"},
    {"Loops", "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "a=1,b=[1, 2, {'c': 'x'}],z=None,u=héllo wörld,f=1.5,"},
    {"Loops", "{% for k, v in d|items %}{{ k }}={{ v }},{% endfor %}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "a=1,b=[1, 2, {'c': 'x'}],z=None,u=héllo wörld,f=1.5,"},
    {"Loops", "{% for k in d %}{{ k }},{% endfor %}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "a,b,z,u,f,"},
    {"Loops", "{% for x in [] %}a{% else %}empty{% endfor %}", "{}", "empty"},
    {"Loops", "{% for x in [1,2,3,4,5] if x is odd %}{{ x }}{{ loop.length }}{% endfor %}", "{}",
     "133353"},
    {"Loops",
     "{% for x in [1,2,3,4,5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break "
     "%}{% endif %}{{ x }}{% endfor %}",
     "{}", "13"},
    {"Loops",
     "{% for a in [1] %}{% for b in [2,3] %}{{ loop.index }}{{ a }}{{ b }}{% endfor %}{{ "
     "loop.index }}{% endfor %}",
     "{}", "1122131"},
    {"Loops", "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}", "{}", "37"},
    {"Loops", "{% for c in 'héllo' %}{{ c }}.{% endfor %}", "{}", "h.é.l.l.o."},
    {"Loops", "{% for i in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}", "{}", "abab"},
    // ---- Scoping
    {"Scoping", "{% set x = 5 %}{% for i in [1,2] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }}",
     "{}", "[5][5]5"},
    {"Scoping", "{% for x in range(2) %}{% set y = x %}{% endfor %}[{{ y }}]", "{}", "[]"},
    {"Scoping", "{% if true %}{% set y = 3 %}{% endif %}{{ y }}", "{}", "3"},
    {"Scoping",
     "{% set ns = namespace(a=1, b='x') %}{% for i in [1,2,3] %}{% set ns.a = ns.a + i %}{% endfor "
     "%}{{ ns.a }}{{ ns.b }}",
     "{}", "7x"},
    {"Scoping",
     "{% set n = namespace(items=[]) %}{% for i in range(3) %}{% set n.items = n.items + [i] %}{% "
     "endfor %}{{ n.items }}",
     "{}", "[0, 1, 2]"},
    {"Scoping", "{% set a, b = 1, 2 %}{{ a }}{{ b }}", "{}", "12"},
    {"Scoping", "{% set x %}  block {{ 1 }} {% endset %}[{{ x }}]", "{}", "[  block 1 ]"},
    {"Scoping", "{% set x | upper %}abc{% endset %}{{ x }}", "{}", "ABC"},
    {"Scoping", "{% set l = [] %}{% do l.append(1) %}{% set _ = l.append(2) %}{{ l }}", "{}",
     "[1, 2]"},
    {"Scoping", "{% filter upper %}hello {{ 'x' }}{% endfilter %}", "{}", "HELLO X"},
    // ---- Macros
    {"Macros",
     "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ "
     "greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet('C', 'Yo') }}",
     "{}", "Hello, Bob! Hi, Al! Yo, C!"},
    {"Macros",
     "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(5) }}", "{}",
     "54321"},
    {"Macros",
     "{% macro m(a) %}[{{ a }}|{{ varargs }}|{{ kwargs }}]{% endmacro %}{{ m() }}{{ m(1, 2, 3) "
     "}}{{ m(1, k='v') }}",
     "{}", "[|()|{}][1|(2, 3)|{}][1|()|{'k': 'v'}]"},
    {"Macros",
     "{% macro render(msg) %}{{ msg.role }}: {{ msg['content'] | trim }}{% endmacro %}{% for m in "
     "M %}{{ render(m) }}\n{% endfor %}",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "system: sys\nuser: hi\nassistant: yo\n"},
    // ---- Filters
    {"Filters", "{{ '  abc  '|trim }}|{{ 'xxabcxx'|trim('x') }}|{{ '\\u3000wide\\u00a0'|trim }}",
     "{}", "abc|abc|wide"},
    {"Filters", "{{ d|tojson }}\n{{ d|tojson(indent=2) }}\n{{ [1,[2,[]],{}]|tojson(indent=4) }}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "{\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", \"f\": "
     "1.5}\n{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2,\n    {\n      \"c\": \"x\"\n    }\n  ],\n  "
     "\"z\": null,\n  \"u\": \"héllo wörld\",\n  \"f\": 1.5\n}\n[\n    1,\n    [\n        2,\n     "
     "   []\n    ],\n    {}\n]"},
    {"Filters",
     "{{ 'é\"\\\\\\n\\t\\u0001'|tojson }} {{ {'b':1,'a':2}|tojson(sort_keys=true) }} {{ "
     "'é😀'|tojson(ensure_ascii=true) }}",
     "{}", "\"é\\\"\\\\\\n\\t\\u0001\" {\"a\": 2, \"b\": 1} \"\\u00e9\\ud83d\\ude00\""},
    {"Filters",
     "{{ [1,2,3]|tojson(separators=(',', ':')) }} {{ d.f|tojson }} {{ d.z|tojson }} {{ "
     "1e100|tojson }} {{ true|tojson }}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "[1,2,3] 1.5 null 1e+100 true"},
    {"Filters", "{{ M|length }} {{ 'héllo'|length }} {{ d|length }} {{ M|count }} {{ x|length }}",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}], \"d\": {\"a\": 1, \"b\": [1, 2, "
     "{\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", \"f\": 1.5}}",
     "3 5 5 3 0"},
    {"Filters", "{{ ['a','b']|join(', ') }} {{ M|join('|', attribute='role') }} {{ [1,2]|join }}",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "a, b system|user|assistant 12"},
    {"Filters",
     "{{ 'abc DEF'|upper }} {{ 'abc DEF'|lower }} {{ 'abc DEF'|capitalize }} {{ 'hello wORLD-foo "
     "bar_baz'|title }} {{ 'héllo'|upper }}",
     "{}", "ABC DEF abc def Abc def Hello World-Foo Bar_baz HÉLLO"},
    {"Filters", "{{ 'aaa'|replace('a','b') }} {{ 'aaa'|replace('a','b',2) }}", "{}", "bbb bba"},
    {"Filters",
     "{{ x|default('dflt') }} {{ none|default('d2') }} {{ ''|default('d3', true) }} {{ x|d('d4') "
     "}} {{ 0|default('d5', boolean=true) }}",
     "{}", "dflt None d3 d4 d5"},
    {"Filters",
     "{{ [3,1,2]|first }} {{ [3,1,2]|last }} {{ 'abc'|first }} {{ 'abc'|list }} {{ d|list }}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "3 2 a ['a', 'b', 'c'] ['a', 'b', 'z', 'u', 'f']"},
    {"Filters",
     "{{ 12|string ~ 'x' }} {{ '42'|int + 1 }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ "
     "'3.5'|float }} {{ 3|float }} {{ -3|abs }} {{ -3.5|abs }}",
     "{}", "12x 43 4 0 7 3.5 3.0 3 3.5"},
    {"Filters",
     "{{ 3.14159|round }} {{ 3.14159|round(2) }} {{ 2.5|round }} {{ 3.7|round(0, 'floor') }} {{ "
     "3.2|round(method='ceil') }}",
     "{}", "3.0 3.14 2.0 3.0 4.0"},
    {"Filters",
     "{{ M|map(attribute='role')|list }} {{ ['a','b']|map('upper')|join }} {{ M|selectattr('role', "
     "'equalto', 'user')|list }} {{ M|rejectattr('role', 'equalto', "
     "'user')|map(attribute='content')|list }}",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "['system', 'user', 'assistant'] AB [{'role': 'user', 'content': 'hi'}] ['sys', 'yo']"},
    {"Filters",
     "{{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('even')|list }} {{ "
     "[0,1,'',none,'a']|select|list }} {{ [1,2,3,4,5,6]|select('divisibleby', 3)|list }}",
     "{}", "[1, 3] [1, 3] [1, 'a'] [3, 6]"},
    {"Filters",
     "{{ ['a','B','a','b']|unique|list }} {{ [3,1,2]|sort }} {{ [3,1,2]|sort(reverse=true) }} {{ "
     "['b','A','c']|sort }} {{ M|sort(attribute='role')|map(attribute='role')|join(',') }}",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "['a', 'B'] [1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] assistant,system,user"},
    {"Filters",
     "{{ {'b':1,'a':2}|dictsort }} {{ [1,2,3]|reverse|list }} {{ 'abc'|reverse }} {{ '<a&b>'|e }} "
     "{{ '<x>'|safe }} {{ '<\\'\">'|escape }}",
     "{}", "[('a', 2), ('b', 1)] [3, 2, 1] cba &lt;a&amp;b&gt; <x> &lt;&#39;&#34;&gt;"},
    {"Filters",
     "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, "
     "blank=true) }}|{{ 'one two  three'|wordcount }}",
     "{}", "a\n    b\n\n    c|  a\n  b|a\n  \n  b|3"},
    {"Filters",
     "{{ [1,2,3,4,5]|batch(2)|list }} {{ [1,2,3]|batch(2, 'x')|list }} {{ [3,1,2]|min }} {{ "
     "[3,1,2]|max }} {{ [1,2,3]|sum }}",
     "{}", "[[1, 2], [3, 4], [5]] [[1, 2], [3, 'x']] 1 3 6"},
    {"Filters", "{{ 'abc'|center(9) }}|{{ '%s-%d'|format('a', 3) }}|{{ [1,[2]]|pprint }}", "{}",
     "   abc   |a-3|[1, [2]]"},
    {"Filters",
     "{{ ['brave_search', 'code_interpreter', 'wolfram']|reject('equalto', "
     "'code_interpreter')|join(', ') }}",
     "{}", "brave_search, wolfram"},
    // ---- Tests
    {"Tests",
     "{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 'a' is string }} {{ 1 is "
     "number }} {{ 1.0 is number }} {{ true is number }} {{ 1 is integer }} {{ 1.0 is integer }} "
     "{{ true is integer }} {{ d is mapping }} {{ M is mapping }}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}, \"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", "
     "\"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "False True True True True True True True False False True False"},
    {"Tests",
     "{{ 'a' is iterable }} {{ M is iterable }} {{ d is iterable }} {{ 1 is iterable }} {{ x is "
     "iterable }} {{ 'a' is sequence }} {{ d is sequence }} {{ 1 is sequence }} {{ true is boolean "
     "}} {{ 1 is boolean }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false "
     "}}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}, \"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", "
     "\"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "True True True False True True True False True False True False True False"},
    {"Tests",
     "{{ 1 is equalto 1 }} {{ 'a' is equalto('a') }} {{ 2 is eq 3 }} {{ 2 is in [1,2] }} {{ 3 is "
     "odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 2 is not none }} {{ x is not defined }}",
     "{}", "True True False True True True True True True"},
    {"Tests",
     "{{ [] is sequence }} {{ {} is iterable }} {{ none is mapping }} {{ '' is none }} {{ 5 is "
     "float }} {{ 5.0 is float }} {{ 3 is gt 2 }} {{ 'ab' is lower }}",
     "{}", "True True False False False True True True"},
    // ---- Access
    {"Access",
     "{{ 'abcdef'[1:3] }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[-2:] }} {{ 'abcdef'[:-2] }} {{ "
     "[1,2,3,4][::2] }} {{ [1,2,3,4][::-1] }} {{ [1,2,3,4][-1] }}",
     "{}", "bc fedcba ef abcd [1, 3] [4, 3, 2, 1] 4"},
    {"Access",
     "{{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ [1,2,3][5:] }} {{ [1,2,3,4,5][4:1:-2] }} {{ "
     "M[::-1]|map(attribute='role')|join(',') }}",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
     "é olléh [] [5, 3] assistant,user,system"},
    {"Access",
     "{{ M[0].role }} {{ M[0]['content'] }} {{ M[-1].content }} {{ d.b[2].c }} {{ d['b'][2]['c'] "
     "}} [{{ d.missing }}] {{ d.b.0 }} [{{ M[7] }}]",
     "{\"M\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}], \"d\": {\"a\": 1, \"b\": [1, 2, "
     "{\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", \"f\": 1.5}}",
     "system sys yo x x [] 1 []"},
    {"Access", "{{ none.foo is defined }} {{ d.items is defined }} {{ d['items'] is defined }}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "False True True"},
    // ---- Methods
    {"Methods",
     "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ "
     "'a,b,c'.rsplit(',', 1) }}",
     "{}", "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b,c'] ['a,b', 'c']"},
    {"Methods",
     "{{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x','c')) }} {{ 'abc'.upper() }} {{ "
     "'ABC'.lower() }} {{ 'hello world'.title() }} {{ 'abcb'.find('b') }} {{ 'abcb'.rfind('b') }} "
     "{{ 'abc'.find('z') }}",
     "{}", "True True ABC abc Hello World 1 3 -1"},
    {"Methods",
     "{{ ' a '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|{{ "
     "'\\n\\nx\\n'.strip('\\n') }}",
     "{}", "a|axx|xxa|x"},
    {"Methods",
     "{{ '{} and {}'.format('a', 1) }} {{ '{0}{0}{name}'.format('x', name='n') }} {{ ', "
     "'.join(['a','b']) }} {{ 'a\\nb'.splitlines() }} {{ '12'.isdigit() }} {{ 'ab'.count('a') }}",
     "{}", "a and 1 xxn a, b ['a', 'b'] True 1"},
    {"Methods",
     "{{ d.get('a') }} {{ d.get('nope') }} {{ d.get('nope', 5) }} {{ d.keys()|list }} {{ "
     "d.values()|list|length }} {{ d.items()|list|first }}",
     "{\"d\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"x\"}], \"z\": null, \"u\": \"héllo wörld\", "
     "\"f\": 1.5}}",
     "1 None 5 ['a', 'b', 'z', 'u', 'f'] 5 ('a', 1)"},
    {"Methods",
     "{{ m.content.split('</think>')[-1].lstrip('\\n') }}|{{ "
     "m.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}",
     "{\"m\": {\"content\": \"<think>\\nreason\\n</think>\\n\\nanswer\"}}", "answer|reason"},
    {"Methods", "{{ u|upper }} {{ u|length }} {{ u[1:4] }} {{ u.split(' ') }} {{ u.find('w') }}",
     "{\"u\": \"héllo wörld\"}", "HÉLLO WÖRLD 11 éll ['héllo', 'wörld'] 6"},
    // ---- Globals
    {"Globals",
     "{{ range(5)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ dict(a=1, b=2) "
     "}} {{ namespace(x=1).x }}",
     "{}", "[0, 1, 2, 3, 4] [1, 4, 7] [5, 3, 1] {'a': 1, 'b': 2} 1"},
};

TEST(JinjaTest, MatchesJinja2Reference) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(std::string(c.group) + ": " + c.source);
    Rendered r = RenderWith(c.source, c.vars);
    ASSERT_TRUE(r.ok) << r.text;
    EXPECT_EQ(r.text, c.expected);
  }
}

// Each error case: the template must fail (never crash), and the message must name the problem
// and, for syntax errors, the position.
struct ErrorCase {
  const char* source;
  const char* vars;
  const char* message_part;
};

TEST(JinjaTest, SyntaxErrorsNameLineColumnAndProblem) {
  const ErrorCase cases[] = {
      {"{% if x %}a", "{}",
       "line 1, column 12: unexpected end of template: the 'if' block opened at line 1, column 4 "
       "was never closed (expected 'elif' or 'else' or 'endif')"},
      {"ok\n{{ x | nosuchfilter }}", "{}", "line 2, column 8: unknown filter 'nosuchfilter'"},
      {"{{ x is nosuchtest }}", "{}", "line 1, column 9: unknown test 'nosuchtest'"},
      {"{% for x in y %}{% endif %}", "{}", "unexpected 'endif'"},
      {"a\n  {% frobnicate %}", "{}", "line 2, column 6: unknown tag 'frobnicate'"},
      {"{% include 'x.j2' %}", "{}", "unsupported tag 'include'"},
      {"{{ 'abc }}", "{}", "line 1, column 4: unterminated string literal"},
      {"{{ x ", "{}", "tag is missing its '}}'"},
      {"{# never closed", "{}", "unterminated comment"},
      {"{{ (1 + }}", "{}", "line 1, column 9: unexpected '}'"},
      {"{{ (1 + ) }}", "{}", "line 1, column 9: unexpected ')' (expected an expression)"},
      {"{{ a b }}", "{}", "expected end of print statement"},
      {"{% break %}", "{}", "'break' outside of a for loop"},
      {"{{ x ] }}", "{}", "unexpected ']'"},
      {"{{ x $ y }}", "{}", "unexpected character '$'"},
      {"{% set %}", "{}", "expected a variable name"},
      {"{% for x in y recursive %}{% endfor %}", "{}", "recursive for loops are not supported"},
      {"{{ 99999999999999999999999 }}", "{}", "integer literal out of range"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.source);
    Rendered r = RenderWith(c.source, c.vars);
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.text.find(c.message_part), std::string::npos) << r.text;
  }
}

TEST(JinjaTest, RuntimeErrorsFollowJinjaUndefinedSemantics) {
  const ErrorCase cases[] = {
      {"{{ x.foo }}", "{}", "line 1, column 6: 'x' is undefined"},
      {"{{ d.nope.foo }}", R"({"d": {}})", "'dict object' has no attribute 'nope'"},
      {"{{ m[0]['role'] }}", R"({"m": []})", "list object has no element 0"},
      {"{{ 'a' + x }}", "{}", "'x' is undefined"},
      {"{{ 'a' + 1 }}", "{}", "unsupported operand type(s) for +: 'str' and 'int'"},
      {"{{ 'a' + none }}", "{}", "unsupported operand type(s) for +: 'str' and 'NoneType'"},
      {"{% for i in 5 %}{% endfor %}", "{}", "'int' object is not iterable"},
      {"{{ 1 / 0 }}", "{}", "division by zero"},
      {"{{ 1 // 0 }}", "{}", "division by zero"},
      {"{{ x() }}", "{}", "'x' is undefined"},
      {"{{ 'a'() }}", "{}", "'str' object is not callable"},
      {"{{ 1 < 'a' }}", "{}", "'<' not supported between instances of 'int' and 'str'"},
      {"{{ 'a' in none }}", "{}", "argument of type 'NoneType' is not iterable"},
      {"{{ x|tojson }}", "{}", "not JSON serializable"},
      {"{{ raise_exception('Conversation roles must alternate') }}", "{}",
       "line 1, column 4: Conversation roles must alternate"},
      {"{% set a, b = [1] %}", "{}", "cannot unpack 1 values into 2 names"},
      {"{% set x = 1 %}{% set x.y = 2 %}", "{}", "only namespace() objects support attribute"},
      {"{{ -[1,2]|length }}", "{}", "bad operand type for unary -: 'list'"},
      {"{{ 9223372036854775807 + 1 }}", "{}", "integer overflow"},
      // |int of a value past 64 bits: Python gives a big integer, kiln an error (it gave 0).
      {"{{ '99999999999999999999'|int }}", "{}", "int: value out of the 64-bit integer range"},
      {"{{ 1e30|int }}", "{}", "int: value out of the 64-bit integer range"},
      {"{{ '1e30'|int }}", "{}", "int: value out of the 64-bit integer range"},
      {"{{ range(1000000)|length }}", "{}", "range too big"},
      {"{{ [1, 'a']|sort }}", "{}", "'<' not supported between instances of 'str' and 'int'"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.source);
    Rendered r = RenderWith(c.source, c.vars);
    EXPECT_FALSE(r.ok) << r.text;
    EXPECT_NE(r.text.find(c.message_part), std::string::npos) << r.text;
  }
}

TEST(JinjaTest, RecursionDepthIsLimited) {
  Rendered r = RenderWith("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "{}");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.text.find("maximum macro call depth (64) exceeded"), std::string::npos) << r.text;

  std::string deep = std::string(5000, '(') + "1" + std::string(5000, ')');
  Rendered p = RenderWith("{{ " + deep + " }}", "{}");
  EXPECT_FALSE(p.ok);
  EXPECT_NE(p.text.find("nested too deeply"), std::string::npos) << p.text;

  std::string blocks;
  for (int i = 0; i < 1000; ++i) blocks += "{% if true %}";
  Rendered b = RenderWith(blocks, "{}");
  EXPECT_FALSE(b.ok);
  EXPECT_NE(b.text.find("nested too deeply"), std::string::npos) << b.text;
}

TEST(JinjaTest, OutputSizeIsLimited) {
  RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  Rendered r = RenderWith("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "{}", limits);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.text.find("output too large"), std::string::npos) << r.text;
  Rendered s = RenderWith("{{ 'x' * 10000000000 }}", "{}", limits);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.text.find("output too large"), std::string::npos) << s.text;
  Rendered ok = RenderWith("{{ 'x' * 1000 }}", "{}", limits);
  ASSERT_TRUE(ok.ok);
  EXPECT_EQ(ok.text, std::string(1000, 'x'));
}

// Regression (issue 18): flat chains are parsed by loops but build left-deep trees that the
// interpreter walks (and frees) recursively; 12,000 '+' or 50,000 '~' overflowed the stack. The
// tree height is bounded at parse time.
TEST(JinjaTest, LongFlatChainsAreSyntaxErrorsNotStackOverflows) {
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  for (const std::string& t :
       {"{{ 1" + repeat("+1", 12000) + " }}", "{{ 'a'" + repeat("|trim", 20000) + " }}",
        "{{ 'a'" + repeat(" ~ 'a'", 50000) + " }}", "{{ true" + repeat(" and true", 50000) + " }}",
        "{{ false" + repeat(" or false", 50000) + " }}", "{{ [0]" + repeat("[0]", 50000) + " }}",
        "{{ x" + repeat(".y", 50000) + " }}", "{{ 2" + repeat("**2", 50000) + " }}",
        "{{ 'a' if " + repeat("x if y else ", 50000) + " z }}",
        "{% set x = 1" + repeat(" * 1", 50000) + " %}",
        "{{ f(k=1" + repeat("+1", 50000) + ") }}"}) {
    Rendered r = RenderWith(t, "{}");
    EXPECT_FALSE(r.ok) << t.substr(0, 40);
    EXPECT_NE(r.text.find("nested too deeply"), std::string::npos) << r.text;
  }
  // Chains of ordinary length still work, with Jinja's results.
  Rendered sum = RenderWith("{{ 1" + repeat("+1", 150) + " }}", "{}");
  ASSERT_TRUE(sum.ok) << sum.text;
  EXPECT_EQ(sum.text, "151");
  Rendered cat = RenderWith("{{ 'a'" + repeat(" ~ 'b'", 150) + " }}", "{}");
  ASSERT_TRUE(cat.ok) << cat.text;
  EXPECT_EQ(cat.text, "a" + std::string(150, 'b'));
}

// Regression (issue 18): a render's memory is bounded while it runs, not only its output: lists
// of copies, list repetition and quadratic string building fail once they pass
// max_allocated_bytes (cumulative), before the process grows by gigabytes.
TEST(JinjaTest, WhatARenderBuildsIsBoundedWhileRendering) {
  RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_allocated_bytes = 16 << 20;
  for (const char* t : {
           "{% set l = [] %}{% for i in range(100000) %}{% do l.append('x' * 100000) %}"
           "{% endfor %}{{ l | length }}",
           "{% set s = 'x' * 500000 %}{% set l = [] %}{% for i in range(100000) %}"
           "{% do l.append(s) %}{% endfor %}{{ l | length }}",
           "{% set ns = namespace(s='') %}{% for i in range(100000) %}"
           "{% set ns.s = ns.s ~ 'xxxxxxxxxx' %}{% endfor %}{{ ns.s | length }}",
           "{% set d = {} %}{% for i in range(100000) %}{% do d.update({i|string: 'x' * 10000}) %}"
           "{% endfor %}{{ d | length }}",
       }) {
    Rendered r = RenderWith(t, "{}", limits);
    EXPECT_FALSE(r.ok) << t;
    EXPECT_NE(r.text.find("too much data"), std::string::npos) << r.text;
  }
  // The same shapes at a modest size render.
  Rendered ok = RenderWith(
      "{% set l = [] %}{% for i in range(100) %}{% do l.append('x' * 1000) %}{% endfor %}"
      "{{ l | length }}",
      "{}", limits);
  ASSERT_TRUE(ok.ok) << ok.text;
  EXPECT_EQ(ok.text, "100");
}

TEST(JinjaTest, RunawayLoopsHitTheStepLimit) {
  RenderLimits limits;
  limits.max_steps = 100000;
  Rendered r =
      RenderWith("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                 "{}", limits);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.text.find("step limit"), std::string::npos) << r.text;
}

TEST(JinjaTest, CyclicListsDoNotCrashTojson) {
  Rendered r = RenderWith("{% set l = [] %}{% do l.append(l) %}{{ l|tojson }}", "{}");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.text.find("nested too deeply"), std::string::npos) << r.text;
}

// Lists and dicts are shared: a list holding itself prints as Python prints it ("[...]"), not 256
// nested brackets, and one holding itself twice no longer costs 2^256 steps; a list doubled by
// `a = [a, a]` is refused once its text passes the print bound, not built to 2^60 elements.
TEST(JinjaTest, PrintingSharedAndCyclicValuesIsBounded) {
  Rendered once = RenderWith("{% set a = [1] %}{% do a.append(a) %}{{ a }}", "{}");
  ASSERT_TRUE(once.ok) << once.text;
  EXPECT_EQ(once.text, "[1, [...]]");
  Rendered twice = RenderWith(
      "{% set a = [] %}{% do a.append(a) %}{% do a.append(a) %}{{ a }}|{{ (a|string)|length }}",
      "{}");
  ASSERT_TRUE(twice.ok) << twice.text;
  EXPECT_EQ(twice.text, "[[...], [...]]|14");
  Rendered dict = RenderWith("{% set d = {} %}{% do d.update({'me': d}) %}{{ d }}", "{}");
  ASSERT_TRUE(dict.ok) << dict.text;
  EXPECT_EQ(dict.text, "{'me': {...}}");
  for (const char* doubling :
       {"{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
        "{% endfor %}{{ ns.a }}",
        "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
        "{% endfor %}{{ ns.a|tojson }}"}) {
    Rendered r = RenderWith(doubling, "{}");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.text.find("too large"), std::string::npos) << r.text.substr(0, 200);
  }
}

// Regression: values are read by reference (EvalRef); a call whose arguments grow the dict that
// holds `self` must not leave `self` dangling (run under ASan to see a failure).
TEST(JinjaTest, MutationDuringMethodCallIsSafe) {
  Rendered r = RenderWith(
      "{% set d = {'x': []} %}"
      "{% do d.x.append(d.update({'a': 1, 'b': 2, 'c': 3, 'e': 4, 'f': 5, 'g': 6, 'h': 7})) %}"
      "{{ d.x }} {{ d|length }}",
      "{}");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.text, "[None] 8");  // jinja2 renders the same
}

// Regression: 200k nested lists are released without recursing 200k destructors deep, and a
// self-containing list does not leak (the render's ContainerArena empties both).
TEST(JinjaTest, DeepAndCyclicStructuresAreReleased) {
  Rendered deep = RenderWith(
      "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}"
      "{% endfor %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}done",
      "{}");
  ASSERT_TRUE(deep.ok) << deep.text;
  EXPECT_EQ(deep.text, "done");
  Rendered cmp = RenderWith(
      "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}"
      "{% endfor %}{{ ns.l == ns.l }}",
      "{}");
  EXPECT_FALSE(cmp.ok);
  EXPECT_NE(cmp.text.find("nested too deeply"), std::string::npos) << cmp.text;
  Rendered cyclic = RenderWith("{% set l = [1] %}{% do l.append(l) %}{{ l|length }}", "{}");
  ASSERT_TRUE(cyclic.ok) << cyclic.text;
  EXPECT_EQ(cyclic.text, "2");
}

TEST(JinjaTest, LexerWhitespaceRulesMatchHf) {
  // keep_trailing_newline=False drops exactly one trailing newline.
  EXPECT_EQ(RenderWith("a\n\n", "{}").text, "a\n");
  // lstrip_blocks strips indentation before block tags but not before {{ }}.
  EXPECT_EQ(RenderWith("  {% if true %}x{% endif %}\n  {{ 'y' }}", "{}").text, "x  y");
  // trim_blocks removes only the first newline after a block tag.
  EXPECT_EQ(RenderWith("{% if true %}\n\nx{% endif %}", "{}").text, "\nx");
}

TEST(JinjaTest, StrftimeNowFormatsTheCurrentDate) {
  Rendered r = RenderWith("{{ strftime_now('%Y') }}", "{}");
  ASSERT_TRUE(r.ok) << r.text;
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  EXPECT_EQ(r.text, std::to_string(tm.tm_year + 1900));
}

TEST(JinjaTest, ParsedTemplateIsSharedAcrossThreads) {
  Body body = ParseTemplate(Tokenize(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m %}{% endfor %}"
      "{{ ns.n }}"));
  std::vector<std::thread> threads;
  std::vector<std::string> outs(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 200; ++rep) {
        ContainerArena arena;
        ValueDict globals;
        AddGlobalFunctions(&globals);
        globals.Set("messages", FromJson(nlohmann::json::array({t, t, t})));
        Interpreter interp{RenderLimits{}};
        outs[t] = interp.Render(body, globals);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(outs[t], std::to_string(3 * t));
}

}  // namespace
}  // namespace kiln::jinja
