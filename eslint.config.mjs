// Lint and format in one pass, as the Effect repository does: eslint's and typescript-eslint's
// recommended rules, with dprint run as an eslint rule (@effect/dprint), so `eslint --fix` is the
// formatter. The dprint settings are Effect's (width 120, no semicolons, double quotes, no trailing
// commas), which the code was written in, except where noted.
import * as effectEslint from "@effect/eslint-plugin"
import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["dist/**", "docs/api/**", "node_modules/**", "bench/perl/**", ".scratch/**", "**/*.md"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  ...effectEslint.configs.dprint,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: "module" },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      "object-shorthand": "error",
      // A `let` assigned once, after callbacks that read it are created, is deliberate.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
      // Wire protocols match control characters on purpose.
      "no-control-regex": "off",
      "@typescript-eslint/no-unused-expressions": ["error", { allowTernary: true, allowShortCircuit: true }],
      // Effect.gen bodies without a yield are fine; tsc already rejects fallthrough.
      "require-yield": "off",
      "no-fallthrough": "off",
      "prefer-rest-params": "off",
      "prefer-spread": "off",
      "no-unused-vars": "off",
      "@typescript-eslint/no-unused-vars": ["error", {
        argsIgnorePattern: "^_",
        varsIgnorePattern: "^_",
        caughtErrors: "none"
      }],
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/ban-ts-comment": "off",
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force",
          // The code orders its imports by hand (types last, grouped by layer); an `if` keeps the
          // braces its author chose.
          "module.sortImportDeclarations": "maintain",
          "module.sortExportDeclarations": "maintain",
          "importDeclaration.sortNamedImports": "maintain",
          "exportDeclaration.sortNamedExports": "maintain",
          useBraces: "maintain"
        }
      }]
    }
  },
  {
    // Node scripts in plain JavaScript (bin/, configs).
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } }
  }
)
