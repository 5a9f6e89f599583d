/**
 * Writes API.md, the reference of the package's public API, from what lib/index.ts exports and the
 * TSDoc on it — the way construct libraries (cdk8s-plus, aws-cdk-lib) ship one. Constructs first
 * (constructor, public members), then structs (props and the types they reference, each property
 * with its type, description and `@default`), then enums and constants.
 *
 *   npm run api-docs            # write API.md
 *   npm run api-docs -- --check # exit 1 when API.md is stale (the test suite runs this)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = join(ROOT, 'lib', 'index.ts');
const OUTPUT = join(ROOT, 'API.md');

interface DocEntry {
  readonly name: string;
  readonly section: 'constructs' | 'structs' | 'types' | 'constants';
  readonly markdown: string;
}

function docText(checker: ts.TypeChecker, symbol: ts.Symbol): string {
  return ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim();
}

function docTag(symbol: ts.Symbol, tag: string): string | undefined {
  const found = symbol.getJsDocTags().find((t) => t.name === tag);
  return found ? ts.displayPartsToString(found.text).trim() : undefined;
}

/** A table cell: one line, pipes escaped. */
function cell(text: string): string {
  return text.replace(/\r?\n+/g, ' ').replace(/\|/g, '\\|').trim();
}

function typeText(checker: ts.TypeChecker, node: ts.Node | undefined, symbol: ts.Symbol): string {
  const declaration = symbol.valueDeclaration ?? symbol.declarations?.[0];
  const typeNode = declaration && (ts.isPropertySignature(declaration) || ts.isPropertyDeclaration(declaration) || ts.isParameter(declaration)) ? declaration.type : undefined;
  if (typeNode) return typeNode.getText();
  return checker.typeToString(checker.getTypeOfSymbolAtLocation(symbol, node ?? declaration!));
}

function propertiesTable(checker: ts.TypeChecker, properties: readonly ts.Symbol[], withDefaults: boolean): string {
  if (properties.length === 0) return '_none_\n';
  const header = withDefaults ? '| Name | Type | Default | Description |\n|---|---|---|---|' : '| Name | Type | Description |\n|---|---|---|';
  const rows = properties.map((property) => {
    const optional = (property.flags & ts.SymbolFlags.Optional) !== 0;
    // Props: which must be given. Members of a construct: which may be undefined.
    const name = withDefaults ? `\`${property.name}\`${optional ? '' : ' (required)'}` : `\`${property.name}\`${optional ? ' (optional)' : ''}`;
    const type = `\`${cell(typeText(checker, undefined, property))}\``;
    const description = cell(docText(checker, property) || '—');
    if (!withDefaults) return `| ${name} | ${type} | ${description} |`;
    const fallback = docTag(property, 'default');
    return `| ${name} | ${type} | ${cell(fallback ? `\`${fallback}\`` : optional ? '—' : '')} | ${description} |`;
  });
  return `${header}\n${rows.join('\n')}\n`;
}

function isPublicMember(declaration: ts.Declaration): boolean {
  const flags = ts.getCombinedModifierFlags(declaration);
  return (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) === 0 && !ts.getNameOfDeclaration(declaration)?.getText().startsWith('#');
}

function describeClass(checker: ts.TypeChecker, symbol: ts.Symbol, declaration: ts.ClassDeclaration): DocEntry {
  const parts = [`### ${symbol.name}\n`, `${docText(checker, symbol)}\n`];
  const heritage = declaration.heritageClauses?.map((clause) => clause.getText()).join(' ');
  if (heritage) parts.push(`\`class ${symbol.name} ${heritage}\`\n`);
  const constructor = declaration.members.find(ts.isConstructorDeclaration);
  if (constructor) {
    const parameters = constructor.parameters.map((parameter) => parameter.getText().replace(/\s+/g, ' ')).join(', ');
    parts.push(`\`\`\`ts\nnew ${symbol.name}(${parameters})\n\`\`\`\n`);
  }
  const statics = declaration.members.filter(
    (member): member is ts.MethodDeclaration => ts.isMethodDeclaration(member) && isPublicMember(member) && (ts.getCombinedModifierFlags(member) & ts.ModifierFlags.Static) !== 0,
  );
  for (const method of statics) {
    const methodSymbol = checker.getSymbolAtLocation(method.name);
    const signature = `${symbol.name}.${method.name.getText()}(${method.parameters.map((p) => p.getText().replace(/\s+/g, ' ')).join(', ')})${method.type ? `: ${method.type.getText()}` : ''}`;
    parts.push(`**Static** \`${signature}\`${methodSymbol ? ` — ${cell(docText(checker, methodSymbol))}` : ''}\n`);
  }
  const members = declaration.members
    .filter((member): member is ts.PropertyDeclaration => ts.isPropertyDeclaration(member) && isPublicMember(member) && (ts.getCombinedModifierFlags(member) & ts.ModifierFlags.Static) === 0)
    .map((member) => checker.getSymbolAtLocation(member.name))
    .filter((member): member is ts.Symbol => member !== undefined);
  const methods = declaration.members.filter(
    (member): member is ts.MethodDeclaration => ts.isMethodDeclaration(member) && isPublicMember(member) && (ts.getCombinedModifierFlags(member) & ts.ModifierFlags.Static) === 0,
  );
  parts.push('#### Properties\n', propertiesTable(checker, members, false));
  if (methods.length > 0) {
    parts.push('#### Methods\n');
    for (const method of methods) {
      const methodSymbol = checker.getSymbolAtLocation(method.name);
      const signature = `${method.name.getText()}(${method.parameters.map((p) => p.getText().replace(/\s+/g, ' ')).join(', ')})${method.type ? `: ${method.type.getText()}` : ''}`;
      parts.push(`- \`${signature}\`${methodSymbol ? ` — ${cell(docText(checker, methodSymbol))}` : ''}`);
    }
    parts.push('');
  }
  return { name: symbol.name, section: 'constructs', markdown: parts.join('\n') };
}

function describeInterface(checker: ts.TypeChecker, symbol: ts.Symbol, declaration: ts.InterfaceDeclaration): DocEntry {
  const type = checker.getDeclaredTypeOfSymbol(symbol);
  const properties = checker.getPropertiesOfType(type);
  const heritage = declaration.heritageClauses?.map((clause) => clause.getText()).join(' ');
  const parts = [`### ${symbol.name}\n`, `${docText(checker, symbol)}\n`];
  if (heritage) parts.push(`\`interface ${symbol.name} ${heritage}\` (inherited properties are listed too)\n`);
  parts.push(propertiesTable(checker, properties, true));
  return { name: symbol.name, section: 'structs', markdown: parts.join('\n') };
}

function describeTypeAlias(checker: ts.TypeChecker, symbol: ts.Symbol, declaration: ts.TypeAliasDeclaration): DocEntry {
  const resolved = checker.typeToString(checker.getDeclaredTypeOfSymbol(symbol), undefined, ts.TypeFormatFlags.InTypeAlias | ts.TypeFormatFlags.NoTruncation);
  return {
    name: symbol.name,
    section: 'types',
    markdown: `### ${symbol.name}\n\n${docText(checker, symbol)}\n\n\`\`\`ts\ntype ${symbol.name} = ${resolved === symbol.name ? declaration.type.getText() : resolved}\n\`\`\`\n`,
  };
}

function describeConstant(checker: ts.TypeChecker, symbol: ts.Symbol, declaration: ts.VariableDeclaration): DocEntry {
  const value = declaration.initializer?.getText().replace(/\s+/g, ' ') ?? checker.typeToString(checker.getTypeOfSymbol(symbol));
  return { name: symbol.name, section: 'constants', markdown: `### ${symbol.name}\n\n${docText(checker, symbol)}\n\n\`\`\`ts\n${symbol.name} = ${value}\n\`\`\`\n` };
}

export function renderApiReference(): string {
  const program = ts.createProgram([ENTRY], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, types: ['node'] });
  const checker = program.getTypeChecker();
  const entry = program.getSourceFile(ENTRY);
  if (!entry) throw new Error(`api-docs: cannot read ${ENTRY}`);
  const moduleSymbol = checker.getSymbolAtLocation(entry);
  if (!moduleSymbol) throw new Error('api-docs: lib/index.ts exports nothing');
  const entries: DocEntry[] = [];
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declaration = symbol.declarations?.[0];
    if (!declaration) continue;
    if (ts.isClassDeclaration(declaration)) entries.push(describeClass(checker, symbol, declaration));
    else if (ts.isInterfaceDeclaration(declaration)) entries.push(describeInterface(checker, symbol, declaration));
    else if (ts.isTypeAliasDeclaration(declaration)) entries.push(describeTypeAlias(checker, symbol, declaration));
    else if (ts.isVariableDeclaration(declaration)) entries.push(describeConstant(checker, symbol, declaration));
    else throw new Error(`api-docs: ${symbol.name} is a ${ts.SyntaxKind[declaration.kind]}, which this generator does not describe`);
  }
  const titles = { constructs: 'Constructs', structs: 'Structs', types: 'Types', constants: 'Constants' } as const;
  const byName = (a: DocEntry, b: DocEntry) => a.name.localeCompare(b.name);
  const sections = (Object.keys(titles) as Array<keyof typeof titles>).map((section) => {
    const items = entries.filter((e) => e.section === section).sort(byName);
    const index = items.map((item) => `[${item.name}](#${item.name.toLowerCase()})`).join(' · ');
    return `## ${titles[section]}\n\n${index}\n\n${items.map((item) => item.markdown).join('\n')}`;
  });
  return [
    '# API reference',
    '',
    '<!-- Generated by `npm run api-docs` from lib/index.ts and its TSDoc: do not edit by hand. -->',
    '',
    'Everything the package exports (`import { … } from \'keycloak-postgres-ha-migration\'`). Props marked',
    '(required) must be given; every other prop has the default shown.',
    '',
    ...sections,
  ].join('\n');
}

const rendered = `${renderApiReference().trimEnd()}\n`;
if (process.argv.includes('--check')) {
  const current = readFileSync(OUTPUT, 'utf8');
  if (current !== rendered) {
    console.error('API.md is stale: run `npm run api-docs` and commit it');
    process.exit(1);
  }
} else {
  writeFileSync(OUTPUT, rendered);
  console.log(`api-docs: ${OUTPUT}`);
}
